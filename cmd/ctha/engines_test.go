package main

import (
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/ctha/ctha/cfg"
	"github.com/ctha/ctha/vrrp"
	"github.com/ctha/ctha/vrrp/packet"
)

// fill sets every field reachable from v to a value other than its zero.
func fill(v reflect.Value) {
	switch v.Interface().(type) {
	case netip.Addr:
		v.Set(reflect.ValueOf(netip.MustParseAddr("10.10.1.7")))
		return
	case netip.Prefix:
		v.Set(reflect.ValueOf(netip.MustParsePrefix("10.10.1.7/24")))
		return
	case time.Duration:
		v.SetInt(int64(7 * time.Second))
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fill(v.Field(i))
			}
		}
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 2, 2))
		for i := range 2 {
			fill(v.Index(i))
		}
	case reflect.Array:
		for i := range v.Len() {
			fill(v.Index(i))
		}
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(v.Elem())
	case reflect.String:
		v.SetString("x")
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(7)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(7)
	}
}

// sameFields checks that every field of the engine's value but those
// named in except has the same-named field of the file's value, printed
// alike.
func sameFields(t *testing.T, path string, engine, file reflect.Value, except ...string) {
	t.Helper()
	for i := range engine.NumField() {
		name := engine.Type().Field(i).Name
		if slices.Contains(except, name) {
			continue
		}
		fv := file.FieldByName(name)
		if !fv.IsValid() {
			t.Errorf("%s.%s: no such field in package cfg", path, name)
			continue
		}
		if e, f := fmt.Sprint(engine.Field(i).Interface()), fmt.Sprint(fv.Interface()); e != f {
			t.Errorf("%s.%s: translated as %s, from %s", path, name, e, f)
		}
	}
}

// TestEngineConfigs: the translation from the file to the engines'
// configurations carries every field.
func TestEngineConfigs(t *testing.T) {
	var c cfg.Config
	fill(reflect.ValueOf(&c).Elem())
	for i := range c.Instances {
		c.Instances[i].Family = cfg.IPv6
	}
	c.Sync.Mode, c.Sync.Cache, c.Sync.Topology = cfg.ModeAlarm, cfg.CacheExternal, cfg.TopologyMultiprimary
	c.Sync.Protocol = cfg.ProtocolConntrackd

	v := vrrpConfig(&c)
	if len(v.Instances) != 2 || len(v.TrackScripts) != 2 || len(v.SyncGroups) != 2 {
		t.Fatalf("vrrp config lost entries: %+v", v)
	}
	for i := range v.Instances {
		sameFields(t, "vrrp.Instance", reflect.ValueOf(v.Instances[i]), reflect.ValueOf(c.Instances[i]), "Auth")
	}
	// Auth: the type by name, the password cut to the 8 bytes on the wire.
	for _, tt := range []struct {
		in   cfg.Auth
		want vrrp.Auth
	}{
		{cfg.Auth{}, vrrp.Auth{}},
		{cfg.Auth{Type: cfg.AuthPass, Password: "secret1"}, vrrp.Auth{Type: vrrp.AuthPass, Password: packet.Password{'s', 'e', 'c', 'r', 'e', 't', '1'}}},
		{cfg.Auth{Type: cfg.AuthAH, Password: "123456789"}, vrrp.Auth{Type: vrrp.AuthAH, Password: packet.Password{'1', '2', '3', '4', '5', '6', '7', '8'}}},
	} {
		c.Instances[0].Auth = tt.in
		if got := vrrpConfig(&c).Instances[0].Auth; got != tt.want {
			t.Errorf("authentication %+v translated as %+v, want %+v", tt.in, got, tt.want)
		}
	}
	for i := range v.TrackScripts {
		sameFields(t, "vrrp.TrackScript", reflect.ValueOf(v.TrackScripts[i]), reflect.ValueOf(c.TrackScripts[i]))
	}
	for i := range v.SyncGroups {
		sameFields(t, "vrrp.SyncGroup", reflect.ValueOf(v.SyncGroups[i]), reflect.ValueOf(c.SyncGroups[i]))
	}
	s := syncConfig(c.Sync, c.NodeName)
	sameFields(t, "ctsync.Config", reflect.ValueOf(s), reflect.ValueOf(*c.Sync), "NodeName", "Links", "SNATPorts")
	if got := [2]uint16{s.SNATPorts.Lo, s.SNATPorts.Hi}; got != c.Sync.SNATPorts {
		t.Errorf("ctsync.Config.SNATPorts: translated as %v, from %v", got, c.Sync.SNATPorts)
	}
	if len(s.Links) != len(c.Sync.Links) {
		t.Fatalf("ctsync.Config.Links: %d, from %d", len(s.Links), len(c.Sync.Links))
	}
	for i := range s.Links {
		// cfg.Link's Peer, the first of Peers, has no counterpart.
		sameFields(t, "ctsync.Link", reflect.ValueOf(s.Links[i]), reflect.ValueOf(c.Sync.Links[i]))
	}
	if s.NodeName != c.NodeName {
		t.Errorf("ctsync.Config.NodeName: translated as %q, from node_name %q", s.NodeName, c.NodeName)
	}
	for _, p := range []string{cfg.ProtocolCtha, cfg.ProtocolConntrackd} {
		c.Sync.Protocol = p
		if got := syncConfig(c.Sync, c.NodeName).Protocol.String(); got != p {
			t.Errorf("protocol %q translated as %q", p, got)
		}
	}
	for _, topo := range []string{cfg.TopologyPrimaryBackup, cfg.TopologyMultiprimary} {
		c.Sync.Topology = topo
		if got := syncConfig(c.Sync, c.NodeName).Topology.String(); got != topo {
			t.Errorf("topology %q translated as %q", topo, got)
		}
	}
}
