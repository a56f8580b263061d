package cwtest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// runChild runs a child role and returns its exit code. The child exits when
// its stdin closes (the parent is gone), so no child outlives its test.
func runChild(role string) int {
	switch role {
	case "holder":
		var spec Spec
		if err := json.Unmarshal([]byte(os.Getenv(envSpec)), &spec); err != nil {
			fmt.Println("ERROR bad spec:", err)
			return 2
		}
		// hold returns only on failure: a healthy holder is killed by its test.
		fmt.Println("ERROR", hold(spec))
		return 2
	case "fdleak", "pool":
		run := runFDLeak
		if role == "pool" {
			run = runPool
		}
		// They return only on failure: a healthy child is killed by its test.
		fmt.Println("ERROR", run())
		return 2
	case "sharer":
		fmt.Println("READY")
		_, _ = io.Copy(io.Discard, os.Stdin)
		return 0
	}
	fmt.Println("ERROR unknown role", role)
	return 2
}

// hold sets up what spec asks for and holds it until the process is killed
// or its stdin closes; it returns only an error.
func hold(spec Spec) error {
	if spec.FDLimit > 0 {
		var rl unix.Rlimit
		if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
			return err
		}
		rl.Cur = spec.FDLimit
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
			return fmt.Errorf("setrlimit: %w", err)
		}
	}
	in := bufio.NewScanner(os.Stdin)
	stdinLines := make(chan string)
	go func() {
		for in.Scan() {
			stdinLines <- in.Text()
		}
		os.Exit(0) // parent gone
	}()

	host := "127.0.0.1:0"
	if spec.Network == "tcp6" {
		host = "[::1]:0"
	}
	lc := net.ListenConfig{KeepAlive: -1}
	ln, err := lc.Listen(context.Background(), spec.Network, host)
	if err != nil {
		return err
	}
	fmt.Println("LISTEN", addrPort(ln.Addr()))
	var held []*net.TCPConn
	accept := spec.ReadEOF + spec.Unread
	for i := 0; i < accept; i++ {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		tc := c.(*net.TCPConn)
		if spec.KeepAlive {
			_ = tc.SetKeepAlive(true)
			_ = tc.SetKeepAlivePeriod(time.Hour)
		}
		held = append(held, tc)
		if i < spec.ReadEOF {
			if _, err := io.Copy(io.Discard, tc); err != nil {
				return err
			}
		}
		if err := WaitState(tc, unix.BPF_TCP_CLOSE_WAIT, 5*time.Second); err != nil {
			return err
		}
		fmt.Println("CONN", addrPort(tc.LocalAddr()), addrPort(tc.RemoteAddr()))
	}
	if accept+spec.NotAccepted > 0 {
		<-stdinLines // the test has made its not-accepted connections
	}
	if spec.Dial > 0 {
		d := net.Dialer{KeepAlive: -1, Timeout: 5 * time.Second}
		for i := 0; i < spec.Dial; i++ {
			c, err := d.Dial("tcp", spec.DialTo)
			if err != nil {
				return err
			}
			tc := c.(*net.TCPConn)
			held = append(held, tc)
			if err := WaitState(tc, unix.BPF_TCP_CLOSE_WAIT, 10*time.Second); err != nil {
				return fmt.Errorf("dialed connection: %w", err)
			}
			fmt.Println("DIAL", addrPort(tc.LocalAddr()), addrPort(tc.RemoteAddr()))
		}
	}
	var sharer *exec.Cmd
	if spec.Share {
		files := make([]*os.File, 0, len(held))
		for _, c := range held {
			f, err := c.File() // a dup of the same socket: same inode
			if err != nil {
				return err
			}
			files = append(files, f)
		}
		sharer = exec.Command(os.Args[0], "-test.run=^$")
		sharer.Env = append(os.Environ(), envRole+"=sharer")
		sharer.ExtraFiles = files
		sharer.Stderr = os.Stderr
		sharer.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		out, err := sharer.StdoutPipe()
		if err != nil {
			return err
		}
		if _, err := sharer.StdinPipe(); err != nil {
			return err
		}
		if err := sharer.Start(); err != nil {
			return err
		}
		for _, f := range files {
			f.Close()
		}
		line, _ := bufio.NewReader(out).ReadString('\n')
		if line != "READY\n" {
			return fmt.Errorf("sharer said %q", line)
		}
		fmt.Println("SHARER", sharer.Process.Pid)
	}
	fmt.Println("READY")
	go serveCommands(stdinLines, held)
	if spec.LeakEvery > 0 {
		leak(ln, spec)
	}
	select {} // hold until killed or stdin closes
}

// leak makes one CLOSE_WAIT socket per interval: it dials its own listener,
// closes the dialed end and keeps the accepted end.
func leak(ln net.Listener, spec Spec) {
	max := spec.LeakMax
	if max == 0 {
		max = 1000
	}
	var held []net.Conn
	d := net.Dialer{KeepAlive: -1, Timeout: 5 * time.Second}
	t := time.NewTicker(spec.LeakEvery)
	defer t.Stop()
	for i := 0; i < max; i++ {
		<-t.C
		c, err := d.Dial(ln.Addr().Network(), ln.Addr().String())
		if err != nil {
			fmt.Println("ERROR leak dial:", err)
			return
		}
		s, err := ln.Accept()
		if err != nil {
			fmt.Println("ERROR leak accept:", err)
			return
		}
		c.Close()
		held = append(held, s)
		if err := WaitState(s.(*net.TCPConn), unix.BPF_TCP_CLOSE_WAIT, 5*time.Second); err != nil {
			fmt.Println("ERROR leak:", err)
			return
		}
		fmt.Println("LEAK", addrPort(s.LocalAddr()), addrPort(s.RemoteAddr()))
	}
	_ = held
}
