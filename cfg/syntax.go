package cfg

import (
	"fmt"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// attr is one attribute as the user wrote it: its value and where it is.
type attr[T any] struct {
	Val   T
	Set   bool        // present in the file
	Bad   bool        // present but not decodable (already diagnosed)
	Range hcl.Range   // the value expression
	Elems []hcl.Range // each element, when the value is a list literal
}

// ok reports whether the attribute was written and decoded.
func (a attr[T]) ok() bool { return a.Set && !a.Bad }

// elem returns the position of list element i, or of the whole value.
func (a attr[T]) elem(i int) hcl.Range {
	if i < len(a.Elems) {
		return a.Elems[i]
	}
	return a.Range
}

// The file as written. Blocks keep their header's position for diagnostics.
type (
	fileSyntax struct {
		NodeName     attr[string]
		StateDir     attr[string]
		Realtime     attr[int]
		Control      *controlSyntax
		Log          *logSyntax
		Instances    []*instanceSyntax
		TrackScripts []*trackScriptSyntax
		SyncGroups   []*syncGroupSyntax
		Sync         *syncSyntax
	}
	controlSyntax struct {
		Socket, Metrics attr[string]
	}
	logSyntax struct {
		Level, Format attr[string]
	}
	instanceSyntax struct {
		block
		Interface      attr[string]
		VRID           attr[int]
		Priority       attr[int]
		Version        attr[int]
		AdvertInterval attr[string]
		Preempt        attr[bool]
		PreemptDelay   attr[string]
		VirtualIPs     attr[[]string]
		UnicastPeers   attr[[]string]
		VirtualMAC     attr[bool]
		TrackScripts   attr[[]string]
		TrackIfaces    []*trackIfaceSyntax
		GARP           *garpSyntax
		Notify         *notifySyntax
		Auth           *authSyntax
		instanceExtrasSyntax
	}
	authSyntax struct {
		DefRange       hcl.Range
		Type, Password attr[string]
	}
	trackIfaceSyntax struct {
		block
		Weight attr[int]
	}
	garpSyntax struct {
		Repeat                   attr[int]
		Interval, Delay, Refresh attr[string]
	}
	trackScriptSyntax struct {
		block
		Command            attr[[]string]
		Interval, Timeout  attr[string]
		Rise, Fall, Weight attr[int]
	}
	syncGroupSyntax struct {
		block
		Instances attr[[]string]
		Conntrack attr[bool]
		Notify    *notifySyntax
	}
	notifySyntax struct {
		Master, Backup, Fault, Stop, Notify attr[[]string]
		Timeout                             attr[string]
	}
	syncSyntax struct {
		block
		Mode, Cache        attr[string]
		Topology           attr[string]
		Protocol           attr[string]
		SNATPortRange      attr[string]
		Defer              attr[string]
		DeferQueue         attr[int]
		Links              []*linkSyntax
		AuthKeyFile        attr[string]
		InsecureNoAuth     attr[bool]
		TCPWindowTracking  attr[bool]
		Filter             *filterSyntax
		Expectations       attr[bool]
		CommitTimeout      attr[string]
		PurgeDelay         attr[string]
		StartupSyncTimeout attr[string]
		RefreshInterval    attr[string]
		CacheTimeout       attr[string]
	}
	linkSyntax struct {
		block
		Interface, Local, Peer, MulticastGroup attr[string]
		Peers                                  attr[[]string]
		Port                                   attr[int]
	}
	filterSyntax struct {
		Protocols, IgnoreAddresses, TCPStates attr[[]string]
	}
)

// block is the header of a labelled block.
type block struct {
	Name      string
	NameRange hcl.Range
	DefRange  hcl.Range
}

func newBlock(b *hcl.Block) block {
	bl := block{DefRange: b.DefRange}
	if len(b.Labels) > 0 {
		bl.Name, bl.NameRange = b.Labels[0], b.LabelRanges[0]
	}
	return bl
}

// Schemas: every key and block the file may hold. Anything else is an error.
var (
	fileSchema = &hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{{Name: "node_name"}, {Name: "state_dir"}, {Name: "realtime_priority"}},
		Blocks: []hcl.BlockHeaderSchema{
			{Type: "control"}, {Type: "log"},
			{Type: "vrrp_instance", LabelNames: []string{"name"}},
			{Type: "track_script", LabelNames: []string{"name"}},
			{Type: "sync_group", LabelNames: []string{"name"}},
			{Type: "conntrack_sync"},
		},
	}
	controlSchema  = attrsSchema("socket", "metrics")
	logSchema      = attrsSchema("level", "format")
	instanceSchema = &hcl.BodySchema{
		Attributes: attrsSchema("interface", "vrid", "priority", "version", "advert_interval",
			"preempt", "preempt_delay", "virtual_ips", "unicast_peers", "virtual_mac",
			"track_scripts", "excluded_virtual_ips", "virtual_routes", "virtual_rules").Attributes,
		Blocks: []hcl.BlockHeaderSchema{
			{Type: "track_interface", LabelNames: []string{"name"}},
			{Type: "track_file", LabelNames: []string{"path"}},
			{Type: "track_process", LabelNames: []string{"name"}},
			{Type: "garp"},
			{Type: "notify"},
			{Type: "authentication"},
		},
	}
	authSchema        = attrsSchema("type", "password")
	trackIfaceSchema  = attrsSchema("weight")
	garpSchema        = attrsSchema("repeat", "interval", "delay", "refresh")
	trackScriptSchema = attrsSchema("command", "interval", "timeout", "rise", "fall", "weight")
	syncGroupSchema   = &hcl.BodySchema{
		Attributes: attrsSchema("instances", "conntrack").Attributes,
		Blocks:     []hcl.BlockHeaderSchema{{Type: "notify"}},
	}
	notifySchema = attrsSchema("master", "backup", "fault", "stop", "notify", "timeout")
	syncSchema   = &hcl.BodySchema{
		Attributes: attrsSchema("mode", "cache", "topology", "protocol", "snat_port_range", "defer", "defer_queue", "auth_key_file", "insecure_no_auth",
			"tcp_window_tracking", "expectations", "commit_timeout", "purge_delay",
			"startup_sync_timeout", "refresh_interval", "cache_timeout").Attributes,
		Blocks: []hcl.BlockHeaderSchema{
			{Type: "link", LabelNames: []string{"name"}},
			{Type: "filter"},
		},
	}
	linkSchema   = attrsSchema("interface", "local", "peer", "peers", "multicast_group", "port")
	filterSchema = attrsSchema("protocols", "ignore_addresses", "tcp_states")
)

func attrsSchema(names ...string) *hcl.BodySchema {
	s := &hcl.BodySchema{}
	for _, n := range names {
		s.Attributes = append(s.Attributes, hcl.AttributeSchema{Name: n})
	}
	return s
}

// decoder turns an HCL body into the syntax structs, collecting diagnostics.
type decoder struct {
	diags hcl.Diagnostics
}

func (d *decoder) content(body hcl.Body, schema *hcl.BodySchema) *hcl.BodyContent {
	c, diags := body.Content(schema)
	d.diags = append(d.diags, diags...)
	return c
}

// decodeAttr decodes attribute name, if present, into dst.
func decodeAttr[T any](d *decoder, attrs hcl.Attributes, name string, dst *attr[T]) {
	a, ok := attrs[name]
	if !ok {
		return
	}
	dst.Set, dst.Range = true, a.Expr.Range()
	if tup, ok := a.Expr.(*hclsyntax.TupleConsExpr); ok {
		for _, e := range tup.Exprs {
			dst.Elems = append(dst.Elems, e.Range())
		}
	}
	// Errors of the expression itself (a variable, a function call) are
	// HCL's to explain; a value of the wrong type gets a message that names
	// the attribute and the type it needs.
	if _, diags := a.Expr.Value(nil); diags.HasErrors() {
		dst.Bad = true
		d.diags = append(d.diags, diags...)
		return
	}
	if diags := gohcl.DecodeExpression(a.Expr, nil, &dst.Val); diags.HasErrors() {
		dst.Bad = true
		d.diags = append(d.diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  fmt.Sprintf("%s must be %s", name, typeName(dst.Val)),
			Subject:  dst.Range.Ptr(),
		})
		return
	}
	if quoted(a.Expr) {
		d.quotedScalar(name, dst.Val, dst.Range)
	}
}

// quoted reports whether e is written as a string: in quotes, or a
// heredoc.
func quoted(e hcl.Expression) bool {
	switch e.(type) {
	case *hclsyntax.TemplateExpr, *hclsyntax.TemplateWrapExpr:
		return true
	}
	return false
}

// quotedScalar warns about a number or a bool written as a string
// (vrid = "51"), which HCL converts without a word: the file works, but
// does not say what it means (a typo in the quotes, "5l", is an error
// only by luck).
func (d *decoder) quotedScalar(name string, v any, r hcl.Range) {
	var msg string
	switch v := v.(type) {
	case int:
		msg = fmt.Sprintf("%s is written as a string; write the number without quotes: %s = %d", name, name, v)
	case bool:
		msg = fmt.Sprintf("%s is written as a string; write true or false without quotes: %s = %t", name, name, v)
	default:
		return
	}
	d.diags = append(d.diags, &hcl.Diagnostic{Severity: hcl.DiagWarning, Summary: msg, Subject: r.Ptr()})
}

// typeName says in words what a value of T looks like in the file.
func typeName(v any) string {
	switch v.(type) {
	case int:
		return "a whole number"
	case bool:
		return "true or false"
	case string:
		return `a string, e.g. "eth0"`
	case []string:
		return `a list of strings, e.g. ["a", "b"]`
	}
	return fmt.Sprintf("of type %T", v)
}

// blocksOf returns the blocks of one type.
func blocksOf(c *hcl.BodyContent, typ string) []*hcl.Block {
	var out []*hcl.Block
	for _, b := range c.Blocks {
		if b.Type == typ {
			out = append(out, b)
		}
	}
	return out
}

// single returns the one block of a type, reporting any further ones.
func (d *decoder) single(c *hcl.BodyContent, typ string) *hcl.Block {
	bs := blocksOf(c, typ)
	if len(bs) == 0 {
		return nil
	}
	for _, b := range bs[1:] {
		d.diags = append(d.diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  fmt.Sprintf("duplicate %s block; only one is allowed (the first is at %s)", typ, pos(bs[0].DefRange)),
			Subject:  b.DefRange.Ptr(),
		})
	}
	return bs[0]
}

// labelled returns the blocks of one type, reporting duplicate labels.
func (d *decoder) labelled(c *hcl.BodyContent, typ string) []*hcl.Block {
	first := map[string]*hcl.Block{}
	var out []*hcl.Block
	for _, b := range blocksOf(c, typ) {
		if len(b.Labels) == 0 { // hcl has reported the missing label
			continue
		}
		name := b.Labels[0]
		if prev, dup := first[name]; dup {
			d.diags = append(d.diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  fmt.Sprintf("duplicate %s %q (the first is at %s)", typ, name, pos(prev.DefRange)),
				Subject:  b.LabelRanges[0].Ptr(),
			})
			continue
		}
		first[name] = b
		out = append(out, b)
	}
	return out
}

func (d *decoder) file(body hcl.Body) *fileSyntax {
	c := d.content(body, fileSchema)
	f := &fileSyntax{}
	decodeAttr(d, c.Attributes, "node_name", &f.NodeName)
	decodeAttr(d, c.Attributes, "state_dir", &f.StateDir)
	decodeAttr(d, c.Attributes, "realtime_priority", &f.Realtime)
	if b := d.single(c, "control"); b != nil {
		f.Control = d.control(b)
	}
	if b := d.single(c, "log"); b != nil {
		f.Log = d.log(b)
	}
	for _, b := range d.labelled(c, "vrrp_instance") {
		f.Instances = append(f.Instances, d.instance(b))
	}
	for _, b := range d.labelled(c, "track_script") {
		f.TrackScripts = append(f.TrackScripts, d.trackScript(b))
	}
	for _, b := range d.labelled(c, "sync_group") {
		f.SyncGroups = append(f.SyncGroups, d.syncGroup(b))
	}
	if b := d.single(c, "conntrack_sync"); b != nil {
		f.Sync = d.sync(b)
	}
	return f
}

func (d *decoder) control(b *hcl.Block) *controlSyntax {
	c := d.content(b.Body, controlSchema)
	s := &controlSyntax{}
	decodeAttr(d, c.Attributes, "socket", &s.Socket)
	decodeAttr(d, c.Attributes, "metrics", &s.Metrics)
	return s
}

func (d *decoder) log(b *hcl.Block) *logSyntax {
	c := d.content(b.Body, logSchema)
	s := &logSyntax{}
	decodeAttr(d, c.Attributes, "level", &s.Level)
	decodeAttr(d, c.Attributes, "format", &s.Format)
	return s
}

func (d *decoder) instance(b *hcl.Block) *instanceSyntax {
	c := d.content(b.Body, instanceSchema)
	s := &instanceSyntax{block: newBlock(b)}
	a := c.Attributes
	decodeAttr(d, a, "interface", &s.Interface)
	decodeAttr(d, a, "vrid", &s.VRID)
	decodeAttr(d, a, "priority", &s.Priority)
	decodeAttr(d, a, "version", &s.Version)
	decodeAttr(d, a, "advert_interval", &s.AdvertInterval)
	decodeAttr(d, a, "preempt", &s.Preempt)
	decodeAttr(d, a, "preempt_delay", &s.PreemptDelay)
	decodeAttr(d, a, "virtual_ips", &s.VirtualIPs)
	decodeAttr(d, a, "unicast_peers", &s.UnicastPeers)
	decodeAttr(d, a, "virtual_mac", &s.VirtualMAC)
	decodeAttr(d, a, "track_scripts", &s.TrackScripts)
	for _, tb := range d.labelled(c, "track_interface") {
		tc := d.content(tb.Body, trackIfaceSchema)
		t := &trackIfaceSyntax{block: newBlock(tb)}
		decodeAttr(d, tc.Attributes, "weight", &t.Weight)
		s.TrackIfaces = append(s.TrackIfaces, t)
	}
	if gb := d.single(c, "garp"); gb != nil {
		gc := d.content(gb.Body, garpSchema)
		g := &garpSyntax{}
		decodeAttr(d, gc.Attributes, "repeat", &g.Repeat)
		decodeAttr(d, gc.Attributes, "interval", &g.Interval)
		decodeAttr(d, gc.Attributes, "delay", &g.Delay)
		decodeAttr(d, gc.Attributes, "refresh", &g.Refresh)
		s.GARP = g
	}
	if nb := d.single(c, "notify"); nb != nil {
		s.Notify = d.notify(nb)
	}
	if ab := d.single(c, "authentication"); ab != nil {
		ac := d.content(ab.Body, authSchema)
		s.Auth = &authSyntax{DefRange: ab.DefRange}
		decodeAttr(d, ac.Attributes, "type", &s.Auth.Type)
		decodeAttr(d, ac.Attributes, "password", &s.Auth.Password)
	}
	d.instanceExtras(c, &s.instanceExtrasSyntax)
	return s
}

func (d *decoder) trackScript(b *hcl.Block) *trackScriptSyntax {
	c := d.content(b.Body, trackScriptSchema)
	s := &trackScriptSyntax{block: newBlock(b)}
	a := c.Attributes
	decodeAttr(d, a, "command", &s.Command)
	decodeAttr(d, a, "interval", &s.Interval)
	decodeAttr(d, a, "timeout", &s.Timeout)
	decodeAttr(d, a, "rise", &s.Rise)
	decodeAttr(d, a, "fall", &s.Fall)
	decodeAttr(d, a, "weight", &s.Weight)
	return s
}

func (d *decoder) syncGroup(b *hcl.Block) *syncGroupSyntax {
	c := d.content(b.Body, syncGroupSchema)
	s := &syncGroupSyntax{block: newBlock(b)}
	decodeAttr(d, c.Attributes, "instances", &s.Instances)
	decodeAttr(d, c.Attributes, "conntrack", &s.Conntrack)
	if nb := d.single(c, "notify"); nb != nil {
		s.Notify = d.notify(nb)
	}
	return s
}

// notify decodes a notify block, an instance's or a sync group's.
func (d *decoder) notify(b *hcl.Block) *notifySyntax {
	c := d.content(b.Body, notifySchema)
	n := &notifySyntax{}
	decodeAttr(d, c.Attributes, "master", &n.Master)
	decodeAttr(d, c.Attributes, "backup", &n.Backup)
	decodeAttr(d, c.Attributes, "fault", &n.Fault)
	decodeAttr(d, c.Attributes, "stop", &n.Stop)
	decodeAttr(d, c.Attributes, "notify", &n.Notify)
	decodeAttr(d, c.Attributes, "timeout", &n.Timeout)
	return n
}

func (d *decoder) sync(b *hcl.Block) *syncSyntax {
	c := d.content(b.Body, syncSchema)
	s := &syncSyntax{block: newBlock(b)}
	a := c.Attributes
	decodeAttr(d, a, "mode", &s.Mode)
	decodeAttr(d, a, "cache", &s.Cache)
	decodeAttr(d, a, "topology", &s.Topology)
	decodeAttr(d, a, "protocol", &s.Protocol)
	decodeAttr(d, a, "snat_port_range", &s.SNATPortRange)
	decodeAttr(d, a, "defer", &s.Defer)
	decodeAttr(d, a, "defer_queue", &s.DeferQueue)
	decodeAttr(d, a, "auth_key_file", &s.AuthKeyFile)
	decodeAttr(d, a, "insecure_no_auth", &s.InsecureNoAuth)
	decodeAttr(d, a, "tcp_window_tracking", &s.TCPWindowTracking)
	decodeAttr(d, a, "expectations", &s.Expectations)
	decodeAttr(d, a, "commit_timeout", &s.CommitTimeout)
	decodeAttr(d, a, "purge_delay", &s.PurgeDelay)
	decodeAttr(d, a, "startup_sync_timeout", &s.StartupSyncTimeout)
	decodeAttr(d, a, "refresh_interval", &s.RefreshInterval)
	decodeAttr(d, a, "cache_timeout", &s.CacheTimeout)
	for _, lb := range d.labelled(c, "link") {
		lc := d.content(lb.Body, linkSchema)
		l := &linkSyntax{block: newBlock(lb)}
		decodeAttr(d, lc.Attributes, "interface", &l.Interface)
		decodeAttr(d, lc.Attributes, "local", &l.Local)
		decodeAttr(d, lc.Attributes, "peer", &l.Peer)
		decodeAttr(d, lc.Attributes, "peers", &l.Peers)
		decodeAttr(d, lc.Attributes, "multicast_group", &l.MulticastGroup)
		decodeAttr(d, lc.Attributes, "port", &l.Port)
		s.Links = append(s.Links, l)
	}
	if fb := d.single(c, "filter"); fb != nil {
		fc := d.content(fb.Body, filterSchema)
		f := &filterSyntax{}
		decodeAttr(d, fc.Attributes, "protocols", &f.Protocols)
		decodeAttr(d, fc.Attributes, "ignore_addresses", &f.IgnoreAddresses)
		decodeAttr(d, fc.Attributes, "tcp_states", &f.TCPStates)
		s.Filter = f
	}
	return s
}
