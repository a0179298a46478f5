// Command benchdocs renders docs/benchmarks.md, its chart and the README's
// headline from a results file that `make bench` wrote, without running
// the benchmark again (after a change to how they are rendered):
//
//	go run ./integration/bench/cmd/benchdocs integration/bench/results/results-DATE.json
//
// It is `make bench-docs`.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ctha/ctha/integration/bench"
)

func main() {
	docs := flag.String("docs", "docs", "directory of benchmarks.md and its chart")
	readme := flag.String("readme", "README.md", "the README whose headline is rewritten")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: benchdocs [-docs DIR] [-readme FILE] RESULTS.json\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	if err := render(flag.Arg(0), *docs, *readme); err != nil {
		fmt.Fprintf(os.Stderr, "benchdocs: %v\n", err)
		os.Exit(1)
	}
}

func render(results, docs, readme string) error {
	run, err := bench.ReadJSON(results)
	if err != nil {
		return err
	}
	rel, err := filepath.Rel(filepath.Dir(readme), results)
	if err != nil {
		return err
	}
	if err := run.WriteReadme(readme, rel); err != nil {
		return err
	}
	return run.WriteDocs(docs, nil)
}
