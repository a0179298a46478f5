package main

import (
	"github.com/ctha/ctha/cfg"
	"github.com/ctha/ctha/ctsync"
	"github.com/ctha/ctha/vrrp"
	"github.com/ctha/ctha/vrrp/packet"
)

// The engines own their configuration types; these translate from the
// validated file (package cfg), which imports no engine.

// vrrpConfig is the VRRP part of c.
func vrrpConfig(c *cfg.Config) vrrp.Config {
	v := vrrp.Config{RealtimePriority: c.RealtimePriority}
	for _, in := range c.Instances {
		vi := vrrp.Instance{
			Name: in.Name, Interface: in.Interface, VRID: in.VRID, Priority: in.Priority,
			Version: in.Version, Family: vrrp.IPv4, AdvertInterval: in.AdvertInterval,
			Preempt: in.Preempt, PreemptDelay: in.PreemptDelay, VIPs: in.VIPs,
			UnicastPeers: in.UnicastPeers, VirtualMAC: in.VirtualMAC, TrackScripts: in.TrackScripts,
			GARP: vrrp.GARP{Repeat: in.GARP.Repeat, Interval: in.GARP.Interval,
				Delay: in.GARP.Delay, Refresh: in.GARP.Refresh},
		}
		if in.Family == cfg.IPv6 {
			vi.Family = vrrp.IPv6
		}
		for _, t := range in.TrackInterface {
			vi.TrackInterface = append(vi.TrackInterface, vrrp.TrackInterface{Name: t.Name, Weight: t.Weight})
		}
		vi.Auth = vrrpAuth(in.Auth)
		vrrpExtras(&vi, in)
		v.Instances = append(v.Instances, vi)
	}
	for _, s := range c.TrackScripts {
		v.TrackScripts = append(v.TrackScripts, vrrp.TrackScript{
			Name: s.Name, Command: s.Command, Interval: s.Interval, Timeout: s.Timeout,
			Rise: s.Rise, Fall: s.Fall, Weight: s.Weight,
		})
	}
	for _, g := range c.SyncGroups {
		v.SyncGroups = append(v.SyncGroups, vrrp.SyncGroup{Name: g.Name, Instances: g.Instances, Conntrack: g.Conntrack})
	}
	return v
}

// vrrpAuth is an instance's authentication; the password is cut to the
// 8 bytes VRRPv2 carries (the configuration warned).
func vrrpAuth(a cfg.Auth) vrrp.Auth {
	var out vrrp.Auth
	switch a.Type {
	case cfg.AuthPass:
		out.Type = vrrp.AuthPass
	case cfg.AuthAH:
		out.Type = vrrp.AuthAH
	default:
		return out
	}
	out.Password, _ = packet.NewPassword(a.Password)
	return out
}

// syncConfig is the conntrack_sync part of a configuration, s, on the
// node named node.
func syncConfig(s *cfg.Sync, node string) ctsync.Config {
	c := ctsync.Config{
		NodeName: node, Key: s.Key, TCPWindowTracking: s.TCPWindowTracking, Expectations: s.Expectations,
		StartupSyncTimeout: s.StartupSyncTimeout, RefreshInterval: s.RefreshInterval, CacheTimeout: s.CacheTimeout,
		Filter: ctsync.Filter{Protocols: s.Filter.Protocols, IgnoreAddresses: s.Filter.IgnoreAddresses, TCPStates: s.Filter.TCPStates},
	}
	if s.Mode == cfg.ModeAlarm {
		c.Mode = ctsync.Alarm
	}
	if s.Cache == cfg.CacheExternal {
		c.Cache = ctsync.External
	}
	if s.Topology == cfg.TopologyMultiprimary {
		c.Topology = ctsync.Multiprimary
	}
	if s.Protocol == cfg.ProtocolConntrackd {
		c.Protocol = ctsync.ProtocolConntrackd
	}
	c.SNATPorts = ctsync.PortRange{Lo: s.SNATPorts[0], Hi: s.SNATPorts[1]}
	c.Defer, c.DeferQueue = s.Defer, s.DeferQueue
	for _, l := range s.Links {
		c.Links = append(c.Links, ctsync.Link{Name: l.Name, Interface: l.Interface, Local: l.Local,
			Peers: l.Peers, MulticastGroup: l.MulticastGroup, Port: l.Port})
	}
	return c
}

// vrrpExtras translates an instance's keepalived extras: VIPs on other
// interfaces and excluded ones, routes, rules, track_file, track_process.
func vrrpExtras(vi *vrrp.Instance, in cfg.Instance) {
	for _, e := range in.ExtraVIPs {
		vi.ExtraVIPs = append(vi.ExtraVIPs, vrrp.ExtraVIP{Prefix: e.Prefix, Interface: e.Interface, Excluded: e.Excluded})
	}
	for _, r := range in.Routes {
		vi.Routes = append(vi.Routes, vrrp.Route{To: r.To, Via: r.Via, Dev: r.Dev, Table: r.Table, Metric: r.Metric})
	}
	for _, r := range in.Rules {
		vi.Rules = append(vi.Rules, vrrp.Rule{From: r.From, To: r.To, Table: r.Table, Priority: r.Priority})
	}
	for _, t := range in.TrackFiles {
		vi.TrackFiles = append(vi.TrackFiles, vrrp.TrackFile{Path: t.Path, Weight: t.Weight, Reverse: t.Reverse})
	}
	for _, p := range in.TrackProcesses {
		vi.TrackProcesses = append(vi.TrackProcesses, vrrp.TrackProcess{Name: p.Name, FullCommand: p.FullCommand,
			Quorum: p.Quorum, QuorumMax: p.QuorumMax, Weight: p.Weight, Reverse: p.Reverse})
	}
}
