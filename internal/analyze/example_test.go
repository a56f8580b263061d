package analyze_test

import (
	"fmt"
	"strings"

	"github.com/closewait/closewait/internal/analyze"
	"github.com/closewait/closewait/internal/diagnose"
)

// Parse saved `ss -tanp` output and judge it like a live snapshot.
func ExampleRead() {
	saved := `State      Recv-Q Send-Q Local Address:Port  Peer Address:Port Process
LISTEN     0      4096         0.0.0.0:8080      0.0.0.0:*     users:(("java",pid=4121,fd=5))
CLOSE-WAIT 1      0           10.0.0.1:8080     10.0.0.9:51000 users:(("java",pid=4121,fd=87),("java",pid=4122,fd=87))
CLOSE-WAIT 0      0           10.0.0.1:8080     10.0.0.9:51002 users:(("java",pid=4121,fd=88))
`
	res, err := analyze.Read(strings.NewReader(saved), analyze.Options{Host: "web-03"})
	if err != nil {
		fmt.Println(err)
		return
	}
	r := res.Judge(diagnose.DefaultThresholds, diagnose.Options{})
	fmt.Println(res.Format, res.Snapshot.Host)
	for _, p := range r.Processes {
		fmt.Println(p.PID, p.Process.Comm, p.CloseWait)
	}
	// Output:
	// ss -tanp web-03
	// 4121 java 2
	// 4122 java 1
}

// A line that is none of the formats is named in the error.
func ExampleParse_error() {
	_, err := analyze.Parse([]byte("CLOSE-WAIT 1 0 10.0.0.1:8080 10.0.0.9:51000\nCLOSE-WAIT 1 0 10.0.0.1:http 10.0.0.9:51001\n"), analyze.Options{})
	fmt.Println(err)
	// Output:
	// ss output, line 2: local address: "http" is not a port number (save the output with -n / -P)
}
