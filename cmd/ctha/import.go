package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/ctha/ctha/cfg"
	"github.com/ctha/ctha/internal/importer"
	"github.com/hashicorp/hcl/v2"
)

const importDetail = `Reads keepalived.conf (with its includes) and conntrackd.conf, and writes one
ctha configuration: vrrp_instance, vrrp_script, vrrp_sync_group, notify
commands, the Sync channels, mode, filter and options. The notify commands
that run conntrackd's primary-backup.sh become conntrack = true on the sync
group. What has no ctha equivalent is written as a "not carried" comment
with its reason, and warned of on stderr. keepalived's router_id becomes
node_name. With neither --keepalived nor --conntrackd, the files under
/etc/keepalived and /etc/conntrackd are read, those that exist.

The output is then checked as ctha check --offline would; its problems are
warnings. Exit 0: written; 1: nothing usable found, or a file unreadable;
2: a wrong command line.
`

// Where keepalived and conntrackd keep their files by default.
const (
	defaultKeepalived = "/etc/keepalived/keepalived.conf"
	defaultConntrackd = "/etc/conntrackd/conntrackd.conf"
)

func (c *cli) importCmd(args []string) int {
	fs := c.flags("import")
	ka := fs.String("keepalived", "", "keepalived.conf `FILE` to read")
	ct := fs.String("conntrackd", "", "conntrackd.conf `FILE` to read")
	out := fs.String("o", "-", "write the HCL to `FILE` (mode 0600: it may hold a VRRP password; never overwrites); - is stdout")
	if code, ok := c.parse(fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(c.stderr, "ctha: import: unexpected argument %q (files are given with --keepalived and --conntrackd)\n", fs.Arg(0))
		return exitUsage
	}
	o := importer.Options{Keepalived: *ka, Conntrackd: *ct}
	if o.Keepalived == "" && o.Conntrackd == "" {
		for _, p := range []struct {
			path string
			dst  *string
		}{{defaultKeepalived, &o.Keepalived}, {defaultConntrackd, &o.Conntrackd}} {
			if _, err := os.Stat(p.path); err == nil {
				*p.dst = p.path
			}
		}
		if o.Keepalived == "" && o.Conntrackd == "" {
			return c.failf("import: neither %s nor %s exists; name the files with --keepalived and --conntrackd", defaultKeepalived, defaultConntrackd)
		}
	}
	res, err := importer.Import(o)
	for _, w := range res.Warnings {
		fmt.Fprintf(c.stderr, "ctha: warning: %s\n", w)
	}
	if err != nil {
		// ErrNothing, or a file that cannot be read or parsed (FILE:LINE).
		return c.failf("import: %v", err)
	}
	name := *out
	if name == "-" {
		if _, err := c.stdout.Write(res.HCL); err != nil {
			return c.failf("write: %v", err)
		}
		name = "the output"
	} else if err := writeFile(name, res.HCL); err != nil {
		return c.failf("import: %v", err)
	}
	_, diags := cfg.ParseWith(res.HCL, name, cfg.Options{Offline: true})
	for _, d := range diags {
		if d.Severity == hcl.DiagError {
			fmt.Fprintf(c.stderr, "ctha: warning: ctha check would refuse %s: %s\n", name, cfg.Format(d))
		}
	}
	return exitOK
}

// writeFile writes data to a new file at path, mode 0600: a running
// configuration is never replaced by an import.
func writeFile(path string, data []byte) error {
	return writeNew(path, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// writeNew creates the file at path, mode 0600, whole or not at all:
// write fills a temporary file in the same directory, which is then
// linked to path. The link fails if path exists (nothing is replaced),
// and the temporary file is removed whatever happens, so a failed write
// leaves nothing that would refuse the next attempt.
func writeNew(path string, write func(io.Writer) error) error {
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("%s: %w (ctha import never overwrites a file)", path, fs.ErrExist)
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp") // mode 0600
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	err = write(f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s: %w (ctha import never overwrites a file)", path, fs.ErrExist)
		}
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
