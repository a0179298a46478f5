package importer

import (
	"fmt"
	"strings"
)

// Limits of an input file, so that a wrong file (a binary, a log) costs
// little and gets a clear error.
const (
	maxFileSize = 1 << 20 // bytes of one file
	maxDepth    = 32      // blocks open at once
	maxIncludes = 64      // files read through include, in all
	maxInclNest = 8       // includes inside includes
)

// stmt is one statement of a keepalived.conf or a conntrackd.conf: the
// words of one line, and the statements of the block it opens, if any.
type stmt struct {
	pos   pos
	words []string
	block bool    // followed by { ... }
	body  []*stmt // the block's statements
}

// pos is where a statement starts: the file as shown to the user and the
// line.
type pos struct {
	file string
	line int
}

func (p pos) String() string { return fmt.Sprintf("%s:%d", p.file, p.line) }

// key is the statement's keyword ("" for an empty block header).
func (s *stmt) key() string {
	if len(s.words) == 0 {
		return ""
	}
	return s.words[0]
}

// args are the words after the keyword.
func (s *stmt) args() []string {
	if len(s.words) == 0 {
		return nil
	}
	return s.words[1:]
}

// syntax says how a format writes comments and which lines are kept raw.
type syntax struct {
	// comment reports whether c starts a comment (outside quotes).
	comment func(c byte) bool
	// raw reports whether the rest of a line after the keyword kw is one
	// word, taken as written (keepalived's include patterns, whose braces
	// are a glob's).
	raw func(kw string) bool
}

// parseTree parses src (from the file shown as name) into statements:
// words separated by blanks, "..." and '...' quoting blanks and braces,
// { and } opening and closing blocks, a line ending a statement. A block's
// { may be on the line after its header.
func parseTree(src []byte, name string, sx syntax) ([]*stmt, error) {
	if len(src) > maxFileSize {
		return nil, fmt.Errorf("%s: larger than %d KiB; not a configuration file", name, maxFileSize>>10)
	}
	if i := strings.IndexByte(string(src), 0); i >= 0 {
		return nil, fmt.Errorf("%s:%d: a NUL byte; not a text file", name, 1+strings.Count(string(src[:i]), "\n"))
	}
	type frame struct {
		s    *stmt // the block's statement; nil at the top
		body []*stmt
	}
	stack := []frame{{}}
	top := func() *frame { return &stack[len(stack)-1] }
	var lastLine int // the line of the last statement of the current body
	for n, line := range strings.Split(string(src), "\n") {
		p := pos{name, n + 1}
		toks, err := lexLine(line, sx)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", p, err)
		}
		var words []string
		flush := func() {
			if len(words) > 0 {
				f := top()
				f.body = append(f.body, &stmt{pos: p, words: words})
				lastLine = p.line
				words = nil
			}
		}
		for _, t := range toks {
			switch {
			case t.open:
				var s *stmt
				f := top()
				switch {
				case len(words) > 0:
					s = &stmt{pos: p, words: words}
					f.body = append(f.body, s)
					words = nil
				case len(f.body) > 0 && !f.body[len(f.body)-1].block && lastLine < p.line:
					s = f.body[len(f.body)-1] // header on the line before
				default:
					return nil, fmt.Errorf("%s: { without a keyword before it", p)
				}
				if len(stack) > maxDepth {
					return nil, fmt.Errorf("%s: blocks nested deeper than %d", p, maxDepth)
				}
				s.block = true
				stack = append(stack, frame{s: s})
			case t.close:
				flush()
				if len(stack) == 1 {
					return nil, fmt.Errorf("%s: } closes no block", p)
				}
				f := top()
				f.s.body = f.body
				if f.s.body == nil {
					f.s.body = []*stmt{}
				}
				stack = stack[:len(stack)-1]
				lastLine = p.line
			default:
				words = append(words, t.word)
			}
		}
		flush()
	}
	if len(stack) > 1 {
		return nil, fmt.Errorf("%s: the block %q opened here is not closed", top().s.pos, strings.Join(top().s.words, " "))
	}
	return stack[0].body, nil
}

// token is a word, or an unquoted { or }.
type token struct {
	word        string
	open, close bool
}

// lexLine splits one line into tokens.
func lexLine(line string, sx syntax) ([]token, error) {
	var (
		toks  []token
		word  []byte
		in    bool // a word is under way
		quote byte
	)
	end := func() {
		if in {
			toks = append(toks, token{word: string(word)})
			word, in = word[:0], false
		}
	}
	for i := 0; i < len(line); i++ {
		c := line[i]
		if quote != 0 {
			switch {
			case c == quote:
				quote = 0
			case c == '\\' && i+1 < len(line):
				i++
				word = append(word, unescape(line[i]))
			default:
				word = append(word, c)
			}
			continue
		}
		switch {
		case c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f':
			end()
		case sx.comment(c):
			end()
			return toks, nil
		case c == '"' || c == '\'':
			quote, in = c, true
		case c == '{' || c == '}':
			end()
			toks = append(toks, token{open: c == '{', close: c == '}'})
		default:
			word, in = append(word, c), true
			if sx.raw != nil && len(toks) == 0 && sx.raw(string(word)) && i+1 < len(line) && (line[i+1] == ' ' || line[i+1] == '\t') {
				end()
				rest := rawRest(line[i+1:], sx)
				if rest != "" {
					toks = append(toks, token{word: rest})
				}
				return toks, nil
			}
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("missing closing %c", quote)
	}
	end()
	return toks, nil
}

// rawRest is the rest of a line as one word: trimmed, its comment cut,
// its quotes removed.
func rawRest(s string, sx syntax) string {
	var b []byte
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0 && c == quote:
			quote = 0
		case quote != 0:
			b = append(b, c)
		case c == '"' || c == '\'':
			quote = c
		case sx.comment(c):
			return strings.TrimSpace(string(b))
		default:
			b = append(b, c)
		}
	}
	return strings.TrimSpace(string(b))
}

// unescape is the character a backslash and c stand for in a quoted
// string.
func unescape(c byte) byte {
	switch c {
	case 'n':
		return '\n'
	case 't':
		return '\t'
	case 'r':
		return '\r'
	}
	return c
}
