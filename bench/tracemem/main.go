// Command tracemem measures `closewait trace` with many traced sockets:
// a server process is traced while it accepts N loopback connections and
// keeps them (the clients, in an untraced process, half-close each, so the
// server's ends sit in CLOSE_WAIT); then trace is stopped with SIGINT and
// its peak RSS (getrusage of the child), the time from SIGINT to its report,
// and the top origins' counts are printed. Servers and clients are split
// into processes of at most 18,000 connections (fd limits).
//
//	go build -o /tmp/closewait ./cmd/closewait && go run ./bench/tracemem -closewait /tmp/closewait -n 100000
//
// Needs root (eBPF, ip netns). Only loopback, by default in a network
// namespace of its own: clients use source addresses 127.77.x.1 so that no
// 4-tuple is reused.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) > 1 && (os.Args[1] == "server" || os.Args[1] == "client") {
		if err := child(os.Args[1], os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "tracemem:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "tracemem: FAILED:", err)
		os.Exit(1)
	}
}

// perProc bounds the connections of one process: its fd limit (raising the
// hard limit needs CAP_SYS_RESOURCE, which containers often lack).
const perProc = 18000

func raiseFDLimit(n int) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	lim.Cur = min(lim.Max, uint64(n)+1000)
	if lim.Cur < uint64(n)+100 {
		return fmt.Errorf("fd limit %d is below %d", lim.Max, n+100)
	}
	return syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
}

func child(role string, args []string) error {
	n, _ := strconv.Atoi(args[0])
	if err := raiseFDLimit(n); err != nil {
		return err
	}
	in := bufio.NewScanner(os.Stdin)
	switch role {
	case "server":
		// No keepalive: probes on the half-closed connections would end
		// them as the minutes pass (and then count them as closed).
		lc := net.ListenConfig{KeepAlive: -1}
		ln, err := lc.Listen(context.Background(), "tcp4", "127.0.0.1:0")
		if err != nil {
			return err
		}
		fmt.Println(ln.Addr().(*net.TCPAddr).Port)
		held := make([]net.Conn, 0, n)
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				held = append(held, c) // kept, never read: CLOSE_WAIT once the client half-closes
				if len(held) == n {
					fmt.Println("all")
				}
			}
		}()
		in.Scan() // until the controller ends
		return nil
	case "client":
		port := args[1]
		idx, _ := strconv.Atoi(args[2])
		in.Scan() // "go"
		held := make([]*net.TCPConn, 0, n)
		for i := range n {
			src := netip.AddrFrom4([4]byte{127, 77, byte(idx), 1}) // one address per client: 18,000 ephemeral ports
			d := net.Dialer{KeepAlive: -1, LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0))}
			c, err := d.Dial("tcp4", "127.0.0.1:"+port)
			if err != nil {
				return fmt.Errorf("dial %d: %w", i, err)
			}
			c.(*net.TCPConn).CloseWrite()
			held = append(held, c.(*net.TCPConn))
		}
		fmt.Println("done")
		in.Scan()
		runtime.KeepAlive(held) // the client ends stay open (FIN_WAIT2) until the controller ends
		return nil
	}
	return nil
}

func run() error {
	n := flag.Int("n", 100000, "connections (traced sockets)")
	cw := flag.String("closewait", "closewait", "the closewait binary")
	ns := flag.Bool("netns", true, "run the servers and clients in a network namespace of their own (ip netns), so that the host's other sockets do not weigh on the measure")
	flag.Parse()
	self, _ := os.Executable()
	var prefix []string
	if *ns {
		name := fmt.Sprintf("tracemem-%d", os.Getpid())
		if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
			return fmt.Errorf("ip netns add: %v %s", err, out)
		}
		defer exec.Command("ip", "netns", "delete", name).Run()
		if out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
			return fmt.Errorf("ip link set lo up: %v %s", err, out)
		}
		prefix = []string{"ip", "netns", "exec", name}
	}
	start := func(args ...string) (*exec.Cmd, *bufio.Scanner, *os.File, error) {
		argv := append(append(append([]string{}, prefix...), self), args...)
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		stdin, _ := cmd.StdinPipe()
		out, _ := cmd.StdoutPipe()
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			return nil, nil, nil, err
		}
		return cmd, bufio.NewScanner(out), stdin.(*os.File), nil
	}
	type proc struct {
		cmd *exec.Cmd
		out *bufio.Scanner
		in  *os.File
	}
	var servers, clients []proc
	defer func() {
		for _, p := range append(servers, clients...) {
			p.in.Close()
			p.cmd.Process.Kill()
			p.cmd.Wait()
		}
	}()
	var pids []string
	for left, i := *n, 0; left > 0; left, i = left-perProc, i+1 {
		k := min(left, perProc)
		srv, srvOut, srvIn, err := start("server", strconv.Itoa(k))
		if err != nil {
			return err
		}
		servers = append(servers, proc{srv, srvOut, srvIn})
		srvOut.Scan()
		port := srvOut.Text()
		cli, cliOut, cliIn, err := start("client", strconv.Itoa(k), port, strconv.Itoa(i))
		if err != nil {
			return err
		}
		clients = append(clients, proc{cli, cliOut, cliIn})
		pids = append(pids, strconv.Itoa(srv.Process.Pid))
	}

	tr := exec.Command(*cw, "trace", "--pid", strings.Join(pids, ","), "--duration", "1h", "--json", "--max", "5")
	var out strings.Builder
	tr.Stdout = &out
	errPipe, _ := tr.StderrPipe()
	if err := tr.Start(); err != nil {
		return err
	}
	sc := bufio.NewScanner(errPipe)
	if !sc.Scan() || !strings.Contains(sc.Text(), "tracing") {
		return fmt.Errorf("closewait trace did not start: %q", sc.Text())
	}
	go func() {
		for sc.Scan() {
			fmt.Fprintln(os.Stderr, sc.Text())
		}
	}()
	t0 := time.Now()
	for _, c := range clients {
		fmt.Fprintln(c.in, "go")
	}
	for _, c := range clients {
		if !c.out.Scan() || c.out.Text() != "done" {
			return fmt.Errorf("client: %q", c.out.Text())
		}
	}
	for _, s := range servers { // every connection accepted (and so recorded)
		if !s.out.Scan() || s.out.Text() != "all" {
			return fmt.Errorf("server: %q", s.out.Text())
		}
	}
	made := time.Since(t0)
	time.Sleep(2 * time.Second)
	t1 := time.Now()
	tr.Process.Signal(syscall.SIGINT)
	if err := tr.Wait(); err != nil {
		return fmt.Errorf("closewait trace: %w", err)
	}
	report := time.Since(t1)
	ru := tr.ProcessState.SysUsage().(*syscall.Rusage)
	var rep struct {
		Origins []struct {
			Count  int `json:"count"`
			Closed int `json:"closed"`
		} `json:"origins"`
		Dropped  uint64 `json:"dropped"`
		Recorded int    `json:"recorded"`
	}
	if err := json.Unmarshal([]byte(out.String()), &rep); err != nil {
		return fmt.Errorf("trace output: %w", err)
	}
	top, closed := 0, 0
	for _, o := range rep.Origins {
		top += o.Count
		closed += o.Closed
	}
	fmt.Printf("n=%d made in %v; closewait trace: recorded %d, dropped %d, %d sockets in the top origins (one per server process), %d closed; peak RSS %.1f MB; SIGINT to report %v; CPU user %v sys %v\n",
		*n, made.Round(time.Millisecond), rep.Recorded, rep.Dropped, top, closed, float64(ru.Maxrss)/1024,
		report.Round(time.Millisecond), time.Duration(ru.Utime.Nano()).Round(time.Millisecond), time.Duration(ru.Stime.Nano()).Round(time.Millisecond))
	return nil
}
