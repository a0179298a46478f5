package importer

import (
	"strings"

	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/zclconf/go-cty/cty"
)

// block is an HCL block of the output, its items in the order written.
type block struct {
	typ    string
	labels []string
	items  []item
}

// item is one line or block of a body: an attribute (name with value or
// raw tokens), a comment, or a nested block.
type item struct {
	name    string
	val     cty.Value
	raw     hclwrite.Tokens
	comment string
	block   *block
}

func (b *block) set(name string, v cty.Value) { b.items = append(b.items, item{name: name, val: v}) }
func (b *block) str(name, v string)           { b.set(name, cty.StringVal(v)) }
func (b *block) num(name string, v int)       { b.set(name, cty.NumberIntVal(int64(v))) }
func (b *block) boolean(name string, v bool)  { b.set(name, cty.BoolVal(v)) }
func (b *block) strs(name string, vs []string) {
	if len(vs) == 0 {
		b.set(name, cty.ListValEmpty(cty.String))
		return
	}
	l := make([]cty.Value, len(vs))
	for i, v := range vs {
		l[i] = cty.StringVal(v)
	}
	b.set(name, cty.ListVal(l))
}

// note adds a comment line (the text without "# ").
func (b *block) note(text string) { b.items = append(b.items, item{comment: text}) }

// add appends a nested block and returns it.
func (b *block) add(typ string, labels ...string) *block {
	nb := &block{typ: typ, labels: labels}
	b.items = append(b.items, item{block: nb})
	return nb
}

// has reports whether the body sets attribute name.
func (b *block) has(name string) bool {
	for _, it := range b.items {
		if it.name == name {
			return true
		}
	}
	return false
}

// objects is a list of objects whose keys keep the given order: the
// output's virtual_routes and virtual_rules.
func objects(list [][][2]any) hclwrite.Tokens {
	var elems []hclwrite.Tokens
	for _, obj := range list {
		var attrs []hclwrite.ObjectAttrTokens
		for _, kv := range obj {
			var v cty.Value
			switch x := kv[1].(type) {
			case string:
				v = cty.StringVal(x)
			case int:
				v = cty.NumberIntVal(int64(x))
			}
			attrs = append(attrs, hclwrite.ObjectAttrTokens{
				Name:  hclwrite.TokensForIdentifier(kv[0].(string)),
				Value: hclwrite.TokensForValue(v),
			})
		}
		elems = append(elems, inlineObject(attrs))
	}
	return hclwrite.TokensForTuple(elems)
}

// inlineObject writes { a = 1, b = 2 } on one line.
func inlineObject(attrs []hclwrite.ObjectAttrTokens) hclwrite.Tokens {
	toks := hclwrite.Tokens{{Type: hclsyntax.TokenOBrace, Bytes: []byte("{")}}
	for i, a := range attrs {
		if i > 0 {
			toks = append(toks, &hclwrite.Token{Type: hclsyntax.TokenComma, Bytes: []byte(",")})
		}
		toks = append(toks, a.Name...)
		toks = append(toks, &hclwrite.Token{Type: hclsyntax.TokenEqual, Bytes: []byte("=")})
		toks = append(toks, a.Value...)
	}
	return append(toks, &hclwrite.Token{Type: hclsyntax.TokenCBrace, Bytes: []byte("}")})
}

// render writes the top-level items as a formatted HCL file.
func render(top *block) []byte {
	f := hclwrite.NewEmptyFile()
	writeBody(f.Body(), top.items)
	return hclwrite.Format(f.Bytes())
}

func writeBody(body *hclwrite.Body, items []item) {
	prevBlock := false
	for i, it := range items {
		// A blank line before and after every block, and before a
		// comment that follows an attribute of a block body's end.
		if i > 0 && (it.block != nil || prevBlock) {
			body.AppendNewline()
		}
		prevBlock = it.block != nil
		switch {
		case it.block != nil:
			nb := body.AppendNewBlock(it.block.typ, it.block.labels)
			writeBody(nb.Body(), it.block.items)
		case it.name != "" && it.raw != nil:
			body.SetAttributeRaw(it.name, it.raw)
		case it.name != "":
			body.SetAttributeValue(it.name, it.val)
		default:
			body.AppendUnstructuredTokens(commentTokens(it.comment))
		}
	}
}

// commentTokens are the comment lines of text (one per line of it).
func commentTokens(text string) hclwrite.Tokens {
	var toks hclwrite.Tokens
	for _, l := range strings.Split(text, "\n") {
		l = strings.TrimRight("# "+sanitize(l), " ")
		toks = append(toks, &hclwrite.Token{Type: hclsyntax.TokenComment, Bytes: []byte(l + "\n")})
	}
	return toks
}

// sanitize keeps a comment printable: control characters (a stray CR)
// become '?'.
func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}
