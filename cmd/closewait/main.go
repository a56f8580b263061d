// Command closewait finds, explains and watches TCP sockets stuck in
// CLOSE_WAIT. See README.md and `closewait --help`.
package main

import (
	"os"

	"github.com/closewait/closewait/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}
