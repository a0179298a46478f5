// Package auth owns the shared secret that authenticates ctha's sync
// protocol: the key file format, key generation and the key's fingerprint.
//
// A key file is text. Blank lines and lines starting with '#' are ignored;
// exactly one other line holds the key, 64 hexadecimal digits (32 bytes):
//
//	# ctha sync key; identical on every node of the pair; keep it mode 0600
//	9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
//
// `ctha keygen FILE` writes such a file. Everything here is safe for
// concurrent use; a Key is an immutable value.
package auth
