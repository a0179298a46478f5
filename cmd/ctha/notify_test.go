package main

import (
	"log/slog"
	"reflect"
	"testing"

	"github.com/ctha/ctha/cfg"
	"github.com/ctha/ctha/internal/failover"
)

// TestNotifyWiring: every field of a notify block reaches the failover
// package; a sync group's choreography hears its instances' moves and
// holds their notify commands, an instance in no group has its own, and
// a lone instance named like a group is not taken for it.
func TestNotifyWiring(t *testing.T) {
	var n cfg.Notify
	fill(reflect.ValueOf(&n).Elem())
	sameFields(t, "failover.Notify", reflect.ValueOf(notifyConfig(n)), reflect.ValueOf(n), "Generic")
	if got := notifyConfig(n).Generic; !reflect.DeepEqual(got, n.Generic) {
		t.Errorf("failover.Notify.Generic: translated as %v, from %v", got, n.Generic)
	}

	conf, diags := cfg.Parse([]byte(`
vrrp_instance "lan" {
  interface   = "lan"
  vrid        = 51
  virtual_ips = ["10.10.1.1/24"]
  notify { master = ["/bin/lan-master"] }
}
vrrp_instance "wan" {
  interface   = "wan"
  vrid        = 52
  virtual_ips = ["10.10.2.1/24"]
}
vrrp_instance "fw" {
  interface   = "lan"
  vrid        = 53
  virtual_ips = ["10.10.1.53/24"]
  notify { stop = ["/bin/fw-stop now"] }
}
sync_group "fw" {
  instances = ["lan", "wan"]
}
`), "x.hcl")
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	d := &daemonState{log: slog.New(slog.DiscardHandler)}
	d.groups = d.newGroups(&conf)
	d.lone = d.newLone(&conf)
	if len(d.groups) != 1 || len(d.lone) != 1 || d.lone["fw"] == nil {
		t.Fatalf("groups %v, lone instances %v; want the group fw and the lone instance fw", d.groups, d.lone)
	}
	// Through what publishes their moves (`ctha events`).
	if h, _ := d.instanceHooks("fw", false).(instanceEvents); h.InstanceHooks != d.groups["fw"] || h.group != "fw" {
		t.Errorf("the sync group fw's instances are heard by %v, want its choreography", h)
	}
	if h, _ := d.instanceHooks("fw", true).(instanceEvents); h.InstanceHooks != d.lone["fw"] || h.group != "" {
		t.Errorf("the lone instance fw is heard by %v, want its own", h)
	}
	if h := d.instanceHooks("nothing", true); h != nil {
		t.Errorf("an unknown instance is heard by %v, want nil", h)
	}
	want := map[string]failover.Notify{
		"lan": {Master: [][]string{{"/bin/lan-master"}}, Timeout: cfg.DefaultNotifyTimeout},
		"wan": {Timeout: cfg.DefaultNotifyTimeout},
	}
	if got := instanceNotify(&conf, conf.SyncGroups[0].Instances); !reflect.DeepEqual(got, want) {
		t.Errorf("the group's instances' notify %v, want %v", got, want)
	}
}
