package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

type config struct {
	closeWait  int
	estab      int
	idleProcs  int
	idleFDs    int
	perProc    int
	perAddr    int
	port       int
	parallel   int
	drainEvery int
	linger2    int
	timeout    time.Duration
	lifetime   time.Duration
	noDrain    bool
	noStdin    bool
	octet      int

	churn        int // new CLOSE_WAIT sockets a second once READY (0: off)
	churnHold    int
	churnLinger2 int
	churnReport  time.Duration
}

// child is one re-executed cwhost process.
type child struct {
	name  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string // stdout lines; closed at EOF
}

type controller struct {
	cfg      config
	self     string
	start    time.Time
	mu       sync.Mutex
	children []*child
}

func runController(args []string) error {
	var cfg config
	fs := flag.NewFlagSet("cwhost", flag.ExitOnError)
	fs.IntVar(&cfg.closeWait, "closewait", 100000, "CLOSE_WAIT sockets to build")
	fs.IntVar(&cfg.estab, "estab", 1000, "ESTABLISHED pairs")
	fs.IntVar(&cfg.idleProcs, "idle-procs", 200, "idle processes")
	fs.IntVar(&cfg.idleFDs, "idle-fds", 200, "non-socket fds (/dev/null) per idle process")
	fs.IntVar(&cfg.perProc, "per-proc", 19000, "max sockets per holder or client process (hard fd limit is per process)")
	fs.IntVar(&cfg.perAddr, "per-addr", 1000, "client connections per source address 127.OCTET.x.y")
	fs.IntVar(&cfg.port, "port", 0, "listening port of the holders (on 127.0.0.10, .11, ...; ESTABLISHED pairs on 127.0.0.9); 0: the kernel picks a free one, so several cwhost can run at once")
	fs.IntVar(&cfg.parallel, "parallel", 2, "client processes connecting at once")
	fs.IntVar(&cfg.drainEvery, "drain-every", 2, "holders read the FIN of every k-th socket (Recv-Q 0 instead of 1); 0: none")
	fs.IntVar(&cfg.linger2, "linger2", 0, "TCP_LINGER2 seconds for the closed client ends (0: system tcp_fin_timeout); a small value shortens the FIN-WAIT-2 drain")
	fs.IntVar(&cfg.octet, "octet", 0, "second octet of client source addresses (0: picked from the clock, 20..219, so reruns do not meet old TIME-WAIT ends)")
	fs.DurationVar(&cfg.timeout, "timeout", 15*time.Minute, "give up if setup takes longer")
	fs.DurationVar(&cfg.lifetime, "lifetime", 3*time.Hour, "stop by itself after this long once READY")
	fs.BoolVar(&cfg.noDrain, "no-wait-drain", false, "do not wait for the orphaned FIN-WAIT-2 client ends to expire")
	fs.BoolVar(&cfg.noStdin, "ignore-stdin", false, "do not stop at stdin EOF (only on SIGTERM/SIGINT or -lifetime)")
	fs.IntVar(&cfg.churn, "churn", 0, "once READY, a churn process makes this many new CLOSE_WAIT sockets a second (on 127.0.0.8) and closes its oldest beyond -churn-hold; 0: off")
	fs.IntVar(&cfg.churnHold, "churn-hold", 1000, "CLOSE_WAIT sockets the churn process keeps")
	fs.IntVar(&cfg.churnLinger2, "churn-linger2", 5, "TCP_LINGER2 seconds of the churn's closed client ends (0: system tcp_fin_timeout)")
	fs.DurationVar(&cfg.churnReport, "churn-report", time.Minute, "interval of the churn's status lines (0: none)")
	fs.Parse(args)
	if cfg.closeWait < 0 || cfg.perProc <= 0 || cfg.perProc > 19900 || cfg.perAddr <= 0 || cfg.perAddr > 40000 || cfg.parallel <= 0 {
		return errors.New("bad flags: need -closewait >= 0, 0 < -per-proc <= 19900, 0 < -per-addr <= 40000, -parallel > 0")
	}
	if cfg.closeWait/cfg.perAddr >= 250*250 {
		return errors.New("too many source addresses: raise -per-addr")
	}
	if cfg.churn < 0 || cfg.churn > 5000 || cfg.churnHold < 0 || cfg.churnHold+2*cfg.churn > 19000 || cfg.churnLinger2 < 0 || cfg.churnReport < 0 {
		return errors.New("bad flags: need 0 <= -churn <= 5000, -churn-hold >= 0, -churn-hold + 2 * -churn <= 19000 (fd limit), -churn-linger2 >= 0, -churn-report >= 0")
	}
	if cfg.churn > 0 && cfg.closeWait/cfg.perAddr >= churnFirstX*250 {
		return errors.New("too many source addresses for -churn (the setup clients must stay below 127.OCTET.128.0): raise -per-addr")
	}
	if cfg.octet == 0 {
		cfg.octet = 20 + int((time.Now().Unix()/10+int64(os.Getpid()))%200)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	c := &controller{cfg: cfg, self: self, start: time.Now()}

	stop, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer cancel()
	if !cfg.noStdin {
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			c.logf("stdin closed")
			cancel()
		}()
	}
	defer c.killAll()

	setup, setupCancel := context.WithTimeout(stop, cfg.timeout)
	err = c.build(setup)
	if err != nil {
		switch {
		case stop.Err() != nil:
			err = fmt.Errorf("stopped during setup: %w", err)
		case setup.Err() != nil:
			err = fmt.Errorf("setup took longer than -timeout %v: %w", cfg.timeout, err)
		}
		setupCancel()
		return err
	}
	setupCancel()
	churnFailed := make(chan error, 1)
	if cfg.churn > 0 {
		if err := c.startChurn(stop, churnFailed); err != nil {
			return fmt.Errorf("churn: %w", err)
		}
	}
	select {
	case <-stop.Done():
		c.logf("stopping")
	case <-time.After(cfg.lifetime):
		c.logf("-lifetime %v reached, stopping", cfg.lifetime)
	case err := <-churnFailed:
		return fmt.Errorf("churn: %w", err)
	}
	return nil
}

func (c *controller) logf(format string, a ...any) {
	fmt.Printf("[%7.1fs] %s\n", time.Since(c.start).Seconds(), fmt.Sprintf(format, a...))
}

// build makes the whole fixture and prints READY.
func (c *controller) build(ctx context.Context) error {
	cfg := c.cfg
	nh := (cfg.closeWait + cfg.perProc - 1) / cfg.perProc
	c.logf("building %d CLOSE_WAIT in %d holders, %d ESTABLISHED pairs, %d idle processes x %d fds; client sources 127.%d.x.y",
		cfg.closeWait, nh, cfg.estab, cfg.idleProcs, cfg.idleFDs, cfg.octet)
	twBefore := twOverflows()

	// Holders first: each listens on its own 127.0.0.x address.
	holders := make([]*child, nh)
	addrs := make([]string, nh) // where holder h listens
	counts := make([]int, nh)
	for h := range holders {
		counts[h] = cfg.closeWait / nh
		if h < cfg.closeWait%nh {
			counts[h]++
		}
		ch, err := c.spawn(fmt.Sprintf("holder%d", h), "holder", "-listen", listenAddr(h, cfg.port).String(),
			"-n", strconv.Itoa(counts[h]), "-drain-every", strconv.Itoa(cfg.drainEvery))
		if err != nil {
			return err
		}
		holders[h] = ch
		line, err := ch.expect(ctx, "LISTEN")
		if err != nil {
			return err
		}
		addrs[h] = strings.TrimPrefix(line, "LISTEN ")
	}

	// ESTABLISHED pairs and idle processes.
	if cfg.estab > 0 {
		ch, err := c.spawn("estab", "estab", "-listen", fmt.Sprintf("127.0.0.9:%d", cfg.port),
			"-n", strconv.Itoa(cfg.estab), "-octet", strconv.Itoa(cfg.octet))
		if err != nil {
			return err
		}
		if _, err := ch.expect(ctx, "READY"); err != nil {
			return err
		}
		c.logf("%d ESTABLISHED pairs ready (pid %d)", cfg.estab, ch.cmd.Process.Pid)
	}
	var idle []*child
	for i := 0; i < cfg.idleProcs; i++ {
		ch, err := c.spawn(fmt.Sprintf("idle%d", i), "idle", "-fds", strconv.Itoa(cfg.idleFDs))
		if err != nil {
			return err
		}
		idle = append(idle, ch)
	}
	for _, ch := range idle {
		if _, err := ch.expect(ctx, "READY"); err != nil {
			return err
		}
	}
	c.logf("%d idle processes ready", len(idle))

	// Clients: connect, half-close, wait for FIN-WAIT-2, close; then the
	// holder drains the FIN of some sockets. -parallel holders at a time.
	sem := make(chan struct{}, cfg.parallel)
	errs := make(chan error, nh)
	var wg sync.WaitGroup
	first := 0
	var closedAt time.Time
	var closedMu sync.Mutex
	for h := range holders {
		h, base := h, first
		first += counts[h]
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				errs <- ctx.Err()
				return
			}
			defer func() { <-sem }()
			if err := c.fill(ctx, holders[h], addrs[h], counts[h], base, h); err != nil {
				errs <- err
				return
			}
			closedMu.Lock()
			closedAt = time.Now()
			closedMu.Unlock()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		return err
	}
	c.logf("all %d client ends closed; server ends are CLOSE_WAIT", cfg.closeWait)

	// Wait for the orphaned FIN-WAIT-2 client ends to expire.
	src := fmt.Sprintf("127.%d.0.0/16", cfg.octet)
	if !cfg.noDrain {
		last := -1
		for {
			n, err := ssCount(ctx, "fin-wait-2", "src", src)
			if err != nil {
				return err
			}
			if n == 0 {
				break
			}
			if n != last {
				c.logf("waiting for %d FIN-WAIT-2 client ends to expire (%.0fs since last close)", n, time.Since(closedAt).Seconds())
				last = n
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("FIN-WAIT-2 ends still present: %d: %w", n, ctx.Err())
			case <-time.After(2 * time.Second):
			}
		}
		c.logf("FIN-WAIT-2 client ends drained")
	}

	// Verify: the holders' own view, and the kernel's table.
	total := 0
	for _, ch := range holders {
		if err := ch.send("CHECK"); err != nil {
			return err
		}
		line, err := ch.expect(ctx, "CHECK")
		if err != nil {
			return err
		}
		var cw, other int
		fmt.Sscanf(line, "CHECK closewait=%d other=%d", &cw, &other)
		if other != 0 {
			return fmt.Errorf("%s: %s (some server ends left CLOSE_WAIT)", ch.name, line)
		}
		total += cw
	}
	n, err := ssCount(ctx, "close-wait", "dst", src)
	if err != nil {
		return err
	}
	c.logf("check: holders hold %d CLOSE_WAIT, ss sees %d with dst %s; time-wait bucket overflows during setup: %d",
		total, n, src, twOverflows()-twBefore)
	if total != cfg.closeWait || n != cfg.closeWait {
		return fmt.Errorf("wanted %d CLOSE_WAIT, holders have %d, ss sees %d", cfg.closeWait, total, n)
	}
	if b, err := os.ReadFile("/proc/net/sockstat"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "TCP:") {
				c.logf("sockstat %s", l)
			}
		}
	}
	var hp []string
	for _, ch := range holders {
		hp = append(hp, strconv.Itoa(ch.cmd.Process.Pid))
	}
	c.logf("setup took %.1fs", time.Since(c.start).Seconds())
	fmt.Println("HOLDERS", strings.Join(hp, " "))
	fmt.Println("CHILDREN", len(c.children))
	fmt.Println("READY")
	return nil
}

// fill runs one client process against holder h and drains the holder.
func (c *controller) fill(ctx context.Context, holder *child, dst string, n, first, h int) error {
	cfg := c.cfg
	t0 := time.Now()
	cl, err := c.spawn(fmt.Sprintf("client%d", h), "client", "-dst", dst,
		"-n", strconv.Itoa(n), "-first", strconv.Itoa(first), "-octet", strconv.Itoa(cfg.octet),
		"-per-addr", strconv.Itoa(cfg.perAddr), "-linger2", strconv.Itoa(cfg.linger2))
	if err != nil {
		return err
	}
	if _, err := cl.expect(ctx, "CONNECTED"); err != nil {
		return err
	}
	if _, err := holder.expect(ctx, "ACCEPTED"); err != nil {
		return err
	}
	t1 := time.Now()
	if err := cl.send("GO"); err != nil {
		return err
	}
	if _, err := cl.expect(ctx, "CLOSED"); err != nil {
		return err
	}
	if err := cl.cmd.Wait(); err != nil {
		return fmt.Errorf("%s: %w", cl.name, err)
	}
	c.forget(cl)
	if err := holder.send("DRAIN"); err != nil {
		return err
	}
	line, err := holder.expect(ctx, "DRAINED")
	if err != nil {
		return err
	}
	c.logf("holder %d (pid %d, %s): %d CLOSE_WAIT (connect %.1fs, close %.1fs, %s read to EOF)",
		h, holder.cmd.Process.Pid, dst, n, t1.Sub(t0).Seconds(), time.Since(t1).Seconds(),
		strings.TrimPrefix(line, "DRAINED "))
	return nil
}

func (c *controller) spawn(name string, args ...string) (*child, error) {
	cmd := exec.Command(c.self, args...)
	// Pdeathsig: the child dies with the controller, even on SIGKILL.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	ch := &child{name: name, cmd: cmd, stdin: stdin, lines: make(chan string, 16)}
	c.mu.Lock()
	c.children = append(c.children, ch)
	c.mu.Unlock()
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			ch.lines <- sc.Text()
		}
		close(ch.lines)
	}()
	return ch, nil
}

// forget drops a child that has exited and been waited for.
func (c *controller) forget(ch *child) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, x := range c.children {
		if x == ch {
			c.children = append(c.children[:i], c.children[i+1:]...)
			return
		}
	}
}

// killAll kills every remaining child by pid and reaps it.
func (c *controller) killAll() {
	c.mu.Lock()
	kids := c.children
	c.children = nil
	c.mu.Unlock()
	for _, ch := range kids {
		_ = ch.cmd.Process.Kill()
	}
	for _, ch := range kids {
		_ = ch.cmd.Wait()
	}
	c.logf("STOPPED: killed %d children", len(kids))
}

func (ch *child) send(line string) error {
	if _, err := io.WriteString(ch.stdin, line+"\n"); err != nil {
		return fmt.Errorf("%s: %w", ch.name, err)
	}
	return nil
}

// expect returns the next stdout line starting with prefix; an ERROR line,
// EOF or the context ending is an error.
func (ch *child) expect(ctx context.Context, prefix string) (string, error) {
	for {
		select {
		case l, ok := <-ch.lines:
			if !ok {
				return "", fmt.Errorf("%s exited before %s", ch.name, prefix)
			}
			if strings.HasPrefix(l, "ERROR") {
				return "", fmt.Errorf("%s: %s", ch.name, l)
			}
			if strings.HasPrefix(l, prefix) {
				return l, nil
			}
		case <-ctx.Done():
			return "", fmt.Errorf("%s: waiting for %s: %w", ch.name, prefix, ctx.Err())
		}
	}
}

// ssCount counts `ss -Htan state STATE DIR PREFIX` rows.
func ssCount(ctx context.Context, state, dir, prefix string) (int, error) {
	out, err := exec.CommandContext(ctx, "ss", "-Htan", "state", state, dir, prefix).Output()
	if err != nil {
		return 0, fmt.Errorf("ss: %w", err)
	}
	return bytes.Count(out, []byte("\n")), nil
}

// twOverflows reads TcpExt TCPTimeWaitOverflow (closed ends the kernel
// forgot because tcp_max_tw_buckets was full).
func twOverflows() int {
	b, err := os.ReadFile("/proc/net/netstat")
	if err != nil {
		return 0
	}
	lines := strings.Split(string(b), "\n")
	for i := 0; i+1 < len(lines); i += 2 {
		names, vals := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		for j := range names {
			if names[j] == "TCPTimeWaitOverflow" && j < len(vals) {
				n, _ := strconv.Atoi(vals[j])
				return n
			}
		}
	}
	return 0
}
