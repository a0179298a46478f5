package cfg

import (
	"errors"
	"strings"
)

// Errors of SplitCommand.
var (
	ErrEmptyCommand   = errors.New("empty command line")
	ErrUnterminated   = errors.New("missing closing quote")
	ErrTrailingEscape = errors.New("backslash at the end with nothing to escape")
)

// What SplitCommand looks for: blanks, and the characters that are
// special outside quotes, inside double quotes and inside single quotes.
const (
	commandSpace      = " \t\n\v\f\r"
	commandSpecialOut = commandSpace + `'"\`
	commandSpecialDQ  = `"\`
	commandSpecialSQ  = `'\`
)

// SplitCommand splits a notify entry into the words of its command line
// as keepalived splits its script strings; no shell is involved:
//
//   - words are separated by blanks (space, tab, newline, \v, \f, \r);
//   - '...' and "..." quote blanks; a quoted part joins the text around
//     it into one word (a'b c'd is "ab cd"); "" is an empty word;
//   - a backslash escapes the next character everywhere, inside single
//     quotes too (unlike a shell): \a \b \E (ESC) \f \n \r \t \v, \cX
//     (control-X), \NNN (one to three octal digits), \xHH (hexadecimal
//     digits, the last two kept), any other character stands for itself
//     (\\ \" \' \ and a blank).
//
// It fails on a line without words, a quote that is not closed and a
// backslash at the end.
func SplitCommand(s string) ([]string, error) {
	var (
		words []string
		word  []byte
		quote byte // the open quote, 0 outside quotes
		i     int
	)
	for {
		// The next word.
		for i < len(s) && strings.IndexByte(commandSpace, s[i]) >= 0 {
			i++
		}
		if i == len(s) {
			break
		}
		word = word[:0]
		for i < len(s) {
			c := s[i]
			special := commandSpecialOut
			switch quote {
			case '"':
				special = commandSpecialDQ
			case '\'':
				special = commandSpecialSQ
			}
			if strings.IndexByte(special, c) < 0 {
				word = append(word, c)
				i++
				continue
			}
			if c == '\\' {
				b, n, ok := unescape(s[i+1:])
				if !ok {
					return nil, ErrTrailingEscape
				}
				word = append(word, b)
				i += 1 + n
				continue
			}
			if quote != 0 { // the closing quote
				quote = 0
				i++
				continue
			}
			if c == '"' || c == '\'' {
				quote = c
				i++
				continue
			}
			break // a blank ends the word
		}
		if quote != 0 {
			return nil, quoteError(quote)
		}
		words = append(words, string(word))
	}
	if len(words) == 0 {
		return nil, ErrEmptyCommand
	}
	return words, nil
}

// quoteError says which quote is missing, wrapping ErrUnterminated.
func quoteError(q byte) error {
	if q == '"' {
		return &quoteErr{`"`}
	}
	return &quoteErr{"'"}
}

type quoteErr struct{ q string }

func (e *quoteErr) Error() string { return "missing closing " + e.q }
func (e *quoteErr) Unwrap() error { return ErrUnterminated }

// unescape decodes the escape whose backslash precedes s: the byte it
// stands for and how many bytes of s it took; ok is false at the end of
// s.
func unescape(s string) (b byte, n int, ok bool) {
	if s == "" {
		return 0, 0, false
	}
	c := s[0]
	switch {
	case c == 'x' && len(s) > 1 && isHex(s[1]):
		n = 1
		for n < len(s) && isHex(s[n]) {
			b = b<<4 | hexVal(s[n])
			n++
		}
		return b, n, true
	case c == 'c' && len(s) > 1:
		return s[1] & 0x1f, 2, true
	case c >= '0' && c <= '7':
		n = 0
		for n < len(s) && n < 3 && s[n] >= '0' && s[n] <= '7' {
			b = b<<3 | (s[n] - '0')
			n++
		}
		return b, n, true
	}
	switch c {
	case 'a':
		b = '\a'
	case 'b':
		b = '\b'
	case 'E':
		b = 0x1b
	case 'f':
		b = '\f'
	case 'n':
		b = '\n'
	case 'r':
		b = '\r'
	case 't':
		b = '\t'
	case 'v':
		b = '\v'
	default:
		b = c
	}
	return b, 1, true
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func hexVal(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}
