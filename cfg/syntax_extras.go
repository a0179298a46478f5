package cfg

import (
	"fmt"
	"math/big"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// The instance's keys for keepalived's everyday extras: excluded VIPs,
// routes and rules that follow the role, track_file and track_process.
type (
	instanceExtrasSyntax struct {
		ExcludedVIPs  attr[[]string]
		VirtualRoutes objList
		VirtualRules  objList
		// routeObjs is, for each route the validator accepted (in the
		// order of Instance.Routes), its index in VirtualRoutes.Objs:
		// invalid ones are skipped, so the two lists differ.
		routeObjs      []int
		TrackFiles     []*trackFileSyntax
		TrackProcesses []*trackProcessSyntax
	}
	trackFileSyntax struct {
		block
		Weight  attr[int]
		Reverse attr[bool]
	}
	trackProcessSyntax struct {
		block
		Weight, Quorum, QuorumMax attr[int]
		Reverse, FullCommand      attr[bool]
	}
	// objList is a list of objects as written: [{ to = "...", via = "..." }].
	objList struct {
		Set   bool
		Range hcl.Range
		Objs  []obj
	}
	// obj is one object of an objList: its fields by key, in the order
	// written.
	obj struct {
		Range  hcl.Range
		Keys   []string
		Fields map[string]objField
	}
	objField struct {
		Val      cty.Value
		Range    hcl.Range // the value
		KeyRange hcl.Range
	}
)

var (
	trackFileSchema    = attrsSchema("weight", "reverse")
	trackProcessSchema = attrsSchema("weight", "reverse", "quorum", "quorum_max", "full_command")
)

func (d *decoder) instanceExtras(c *hcl.BodyContent, s *instanceExtrasSyntax) {
	decodeAttr(d, c.Attributes, "excluded_virtual_ips", &s.ExcludedVIPs)
	s.VirtualRoutes = d.objList(c.Attributes, "virtual_routes", `[{ to = "198.51.100.0/24", via = "192.0.2.254" }]`)
	s.VirtualRules = d.objList(c.Attributes, "virtual_rules", `[{ from = "192.0.2.0/24", table = 100 }]`)
	for _, b := range d.labelled(c, "track_file") {
		bc := d.content(b.Body, trackFileSchema)
		t := &trackFileSyntax{block: newBlock(b)}
		decodeAttr(d, bc.Attributes, "weight", &t.Weight)
		decodeAttr(d, bc.Attributes, "reverse", &t.Reverse)
		s.TrackFiles = append(s.TrackFiles, t)
	}
	for _, b := range d.labelled(c, "track_process") {
		bc := d.content(b.Body, trackProcessSchema)
		t := &trackProcessSyntax{block: newBlock(b)}
		a := bc.Attributes
		decodeAttr(d, a, "weight", &t.Weight)
		decodeAttr(d, a, "reverse", &t.Reverse)
		decodeAttr(d, a, "quorum", &t.Quorum)
		decodeAttr(d, a, "quorum_max", &t.QuorumMax)
		decodeAttr(d, a, "full_command", &t.FullCommand)
		s.TrackProcesses = append(s.TrackProcesses, t)
	}
}

// objList decodes a list of object literals, keeping where each key and
// value is written. example shows the expected shape in a diagnostic.
func (d *decoder) objList(attrs hcl.Attributes, name, example string) objList {
	a, ok := attrs[name]
	if !ok {
		return objList{}
	}
	l := objList{Set: true, Range: a.Expr.Range()}
	bad := func(r hcl.Range, format string, args ...any) {
		d.diags = append(d.diags, &hcl.Diagnostic{Severity: hcl.DiagError,
			Summary: fmt.Sprintf(format, args...), Subject: r.Ptr()})
	}
	tup, ok := a.Expr.(*hclsyntax.TupleConsExpr)
	if !ok {
		bad(l.Range, "%s must be a list of objects, e.g. %s", name, example)
		return l
	}
	for _, e := range tup.Exprs {
		oc, ok := e.(*hclsyntax.ObjectConsExpr)
		if !ok {
			bad(e.Range(), "each entry of %s must be an object, e.g. %s", name, example)
			continue
		}
		o := obj{Range: oc.Range(), Fields: map[string]objField{}}
		for _, it := range oc.Items {
			key := hcl.ExprAsKeyword(it.KeyExpr)
			if key == "" {
				kv, diags := it.KeyExpr.Value(nil)
				if diags.HasErrors() || kv.Type() != cty.String || kv.IsNull() {
					bad(it.KeyExpr.Range(), "a key of %s must be a name, e.g. %s", name, example)
					continue
				}
				key = kv.AsString()
			}
			if prev, dup := o.Fields[key]; dup {
				bad(it.KeyExpr.Range(), "%s is given twice in this entry (the first is at %s)", key, pos(prev.KeyRange))
				continue
			}
			v, diags := it.ValueExpr.Value(nil)
			if diags.HasErrors() {
				d.diags = append(d.diags, diags...)
				continue
			}
			o.Keys = append(o.Keys, key)
			o.Fields[key] = objField{Val: v, Range: it.ValueExpr.Range(), KeyRange: it.KeyExpr.Range()}
		}
		l.Objs = append(l.Objs, o)
	}
	return l
}

// str returns a string field; ok is false when absent or not a string
// (reported).
func (v *validator) objStr(o obj, key string) (string, hcl.Range, bool) {
	f, ok := o.Fields[key]
	if !ok {
		return "", hcl.Range{}, false
	}
	if f.Val.IsNull() || f.Val.Type() != cty.String {
		v.errorf(f.Range, "%s must be a string", key)
		return "", f.Range, false
	}
	return f.Val.AsString(), f.Range, true
}

// objInt returns a whole-number field in [lo, hi]; ok is false when
// absent or invalid (reported).
func (v *validator) objInt(o obj, key string, lo, hi int) (int, bool) {
	f, ok := o.Fields[key]
	if !ok {
		return 0, false
	}
	if f.Val.IsNull() || f.Val.Type() != cty.Number {
		v.errorf(f.Range, "%s must be a whole number", key)
		return 0, false
	}
	bf := f.Val.AsBigFloat()
	n, acc := bf.Int64()
	if acc != big.Exact || n < int64(lo) || n > int64(hi) {
		v.errorf(f.Range, "%s must be a whole number from %d to %d, got %s", key, lo, hi, bf.Text('g', -1))
		return 0, false
	}
	return int(n), true
}
