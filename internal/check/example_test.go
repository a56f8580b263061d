package check_test

import (
	"fmt"
	"time"

	"github.com/closewait/closewait/internal/check"
)

// Review fake settings with one process near its fd limit.
func ExampleReview() {
	sys := &check.Sysctls{FileMax: 2466183, NrOpen: 1048576, FileAllocated: 146089, HasFileNr: true,
		KeepaliveTime: 7200 * time.Second, KeepaliveIntvl: 75 * time.Second, KeepaliveProbes: 9, FinTimeout: 60 * time.Second}
	holders := []check.Holder{{PID: 4121, Comm: "java", CloseWait: 900, OpenFDs: 950, FDSoft: 1024, FDHard: 4096}}
	r := check.Review(sys, holders, 900, 0, check.DefaultThresholds)
	fmt.Println(r.Status)
	fmt.Println(r.Holders[0].Advice[0])
	for _, s := range r.Settings {
		fmt.Println(s.Name, s.Value, s.Matters)
	}
	// Output:
	// critical
	// pid 4121 (java): 950 open fds of its soft limit 1024 (93%), 900 of them CLOSE_WAIT: at 100% accept() and open() fail with EMFILE ("too many open files")
	// fs.file-max 2466183 true
	// fs.file-nr 146089 allocated true
	// fs.nr_open 1048576 false
	// net.ipv4.tcp_keepalive_time 7200s false
	// net.ipv4.tcp_keepalive_intvl 75s false
	// net.ipv4.tcp_keepalive_probes 9 false
	// net.ipv4.tcp_fin_timeout 60s false
}
