package cfg

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestAuthentication(t *testing.T) {
	c, diags := Parse([]byte(`
vrrp_instance "lan" {
  interface   = "lan"
  vrid        = 51
  version     = 2
  virtual_ips = ["10.10.1.1/24"]
  authentication {
    type     = "pass"
    password = "secret1"
  }
}
vrrp_instance "wan" {
  interface     = "wan"
  vrid          = 52
  version       = 2
  virtual_ips   = ["10.10.2.1/24"]
  unicast_peers = ["10.10.2.3"]
  authentication {
    type     = "ah"
    password = "12345678"
  }
}
vrrp_instance "dmz" {
  interface   = "dmz"
  vrid        = 53
  virtual_ips = ["10.10.3.1/24"]
}
`), "auth.hcl")
	if len(diags) > 0 {
		t.Fatalf("diagnostics: %v", diags)
	}
	var got []Auth
	for _, in := range c.Instances {
		got = append(got, in.Auth)
	}
	want := []Auth{{Type: AuthPass, Password: "secret1"}, {Type: AuthAH, Password: "12345678"}, {}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Auth (-want +got):\n%s", diff)
	}
}
