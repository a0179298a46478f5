package main

import (
	"fmt"

	"github.com/ctha/ctha/ctsync/auth"
)

func (c *cli) keygen(args []string) int {
	fs := c.flags("keygen")
	if code, ok := c.parse(fs, args); !ok {
		return code
	}
	switch {
	case fs.NArg() == 0 || fs.NArg() == 1 && fs.Arg(0) == "-": // - is stdout
		k, err := auth.GenerateKey(nil)
		if err != nil {
			return c.failf("%v", err)
		}
		text, _ := k.MarshalText()
		c.stdout.Write(text)
		return exitOK
	case fs.NArg() == 1:
		path := fs.Arg(0)
		k, err := auth.WriteKeyFile(path)
		if err != nil {
			return c.failf("%v", err)
		}
		fmt.Fprintf(c.stdout, "wrote sync key %s (fingerprint %s); copy it to the peer, mode 0600\n", path, k.Fingerprint())
		return exitOK
	}
	fmt.Fprintln(c.stderr, "ctha: keygen: at most one FILE (run `ctha keygen -h`)")
	return exitUsage
}
