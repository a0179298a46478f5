package cfg

import (
	"slices"
	"testing"
)

func TestKeys(t *testing.T) {
	keys := Keys()
	var paths []string
	for _, k := range keys {
		paths = append(paths, k.Path)
	}
	for _, want := range []string{"node_name", "control.socket", "vrrp_instance", "vrrp_instance.garp.repeat",
		"vrrp_instance.track_interface.weight", "sync_group.notify.timeout", "conntrack_sync.link.peers",
		"conntrack_sync.filter.tcp_states"} {
		if !slices.Contains(paths, want) {
			t.Errorf("Keys lacks %s", want)
		}
	}
	if i := slices.Index(paths, "vrrp_instance"); i < 0 || !keys[i].Block || keys[i].Label != "name" {
		t.Errorf("vrrp_instance: %+v", keys[max(i, 0)])
	}
	if len(slices.Compact(slices.Sorted(slices.Values(paths)))) != len(paths) {
		t.Errorf("a key twice: %v", paths)
	}
}
