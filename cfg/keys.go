package cfg

import (
	"fmt"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// Key is one attribute or block that the file may hold, by its path from
// the top of the file: "node_name", "vrrp_instance", "vrrp_instance.garp",
// "vrrp_instance.garp.repeat". Keys lists the schema the parser enforces,
// for the reference documentation (ctha.hcl(5)) and the tests that keep it
// complete.
type Key struct {
	Path  string
	Block bool
	Label string // a block's label ("name"), "" for none
}

// blockSchemas are the schemas of the blocks, by block type.
var blockSchemas = map[string]*hcl.BodySchema{
	"control":         controlSchema,
	"log":             logSchema,
	"vrrp_instance":   instanceSchema,
	"track_interface": trackIfaceSchema,
	"track_file":      trackFileSchema,
	"track_process":   trackProcessSchema,
	"garp":            garpSchema,
	"authentication":  authSchema,
	"track_script":    trackScriptSchema,
	"sync_group":      syncGroupSchema,
	"notify":          notifySchema,
	"conntrack_sync":  syncSchema,
	"link":            linkSchema,
	"filter":          filterSchema,
}

// Keys returns every key of the schema, in the schema's order, each
// block's keys after it.
func Keys() []Key {
	var keys []Key
	var walk func(prefix []string, s *hcl.BodySchema)
	walk = func(prefix []string, s *hcl.BodySchema) {
		for _, a := range s.Attributes {
			keys = append(keys, Key{Path: strings.Join(append(prefix, a.Name), ".")})
		}
		for _, b := range s.Blocks {
			k := Key{Path: strings.Join(append(prefix, b.Type), "."), Block: true}
			if len(b.LabelNames) > 0 {
				k.Label = b.LabelNames[0]
			}
			keys = append(keys, k)
			inner, ok := blockSchemas[b.Type]
			if !ok {
				panic(fmt.Sprintf("cfg: block %s has no schema in blockSchemas", k.Path))
			}
			walk(append(prefix[:len(prefix):len(prefix)], b.Type), inner)
		}
	}
	walk(nil, fileSchema)
	return keys
}
