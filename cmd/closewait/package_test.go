package main

import (
	"bufio"
	"debug/elf"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/closewait/closewait/internal/cli"
	"github.com/closewait/closewait/internal/report"
)

const repoRoot = "../.."

// checkStatic fails the test unless path is an ELF executable with no
// dynamic loader (PT_INTERP) and no needed shared libraries (DT_NEEDED).
func checkStatic(t *testing.T, path string) {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s has a PT_INTERP header: dynamically linked", path)
		}
	}
	libs, err := f.ImportedLibraries()
	if err != nil && !errors.Is(err, elf.ErrNoSymbols) {
		t.Fatal(err)
	}
	if len(libs) > 0 {
		t.Errorf("%s needs shared libraries %v", path, libs)
	}
}

// TestStaticBuildAsInDockerfile runs the Dockerfile's build line (the binary
// the agent image would contain) and checks that it is static, stamped with
// the version and that the image's entrypoint is a valid command line on the
// agent's default port. The Makefile must build with the same flags.
func TestStaticBuildAsInDockerfile(t *testing.T) {
	df, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var buildLine string
	var entry, cmdArgs []string
	var expose string
	sc := bufio.NewScanner(strings.NewReader(string(df)))
	for sc.Scan() {
		l := sc.Text()
		switch {
		case strings.HasPrefix(l, "RUN CGO_ENABLED=0 go build "):
			buildLine = strings.TrimPrefix(l, "RUN ")
		case strings.HasPrefix(l, "ENTRYPOINT "):
			if err := json.Unmarshal([]byte(strings.TrimPrefix(l, "ENTRYPOINT ")), &entry); err != nil {
				t.Fatalf("ENTRYPOINT is not an exec-form JSON array: %v", err)
			}
		case strings.HasPrefix(l, "CMD "):
			if err := json.Unmarshal([]byte(strings.TrimPrefix(l, "CMD ")), &cmdArgs); err != nil {
				t.Fatalf("CMD is not an exec-form JSON array: %v", err)
			}
		case strings.HasPrefix(l, "EXPOSE "):
			expose = strings.TrimSpace(strings.TrimPrefix(l, "EXPOSE "))
		}
	}
	if buildLine == "" || len(entry) != 1 || len(cmdArgs) == 0 {
		t.Fatalf("Dockerfile: build line %q, entrypoint %q, cmd %q; want the binary as ENTRYPOINT and its arguments as CMD", buildLine, entry, cmdArgs)
	}
	if !strings.Contains(buildLine, "-trimpath") || !strings.Contains(buildLine, "internal/cli.Version=${VERSION}") || !strings.Contains(buildLine, "-o /out/closewait") {
		t.Errorf("Dockerfile build line lacks -trimpath, the version stamp or -o /out/closewait: %s", buildLine)
	}

	bin := filepath.Join(t.TempDir(), "closewait")
	cmdline := strings.ReplaceAll(buildLine, "/out/closewait", bin)
	cmd := exec.Command("sh", "-c", cmdline)
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), "VERSION=v9.8.7-test")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", cmdline, err, out)
	}
	checkStatic(t, bin)
	out, err := exec.Command(bin, "--version").Output()
	if err != nil || strings.TrimSpace(string(out)) != "closewait v9.8.7-test" {
		t.Errorf("--version printed %q (%v), want closewait v9.8.7-test", out, err)
	}

	// The default command: the agent on the default port, on every interface.
	if entry[0] != "/usr/bin/closewait" || !strings.Contains(string(df), "COPY --from=build /out/closewait /usr/bin/closewait") {
		t.Errorf("entrypoint %q does not run the copied binary", entry)
	}
	if err := cli.Parse(cmdArgs); err != nil {
		t.Errorf("CMD %q does not parse: %v", cmdArgs, err)
	}
	_, port, _ := strings.Cut(cli.DefaultAgentListen, ":")
	if strings.Join(cmdArgs, " ") != "agent --listen 0.0.0.0:"+port || expose != port {
		t.Errorf("CMD %q / EXPOSE %q: want agent --listen 0.0.0.0:%s and EXPOSE %s", cmdArgs, expose, port, port)
	}
	// The DaemonSet's args replace CMD: they must parse too.
	if ds, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "kubernetes", "daemonset.yaml")); err == nil {
		var args []string
		in := false
		for _, l := range strings.Split(string(ds), "\n") {
			tl := strings.TrimSpace(l)
			switch {
			case tl == "args:":
				in = true
			case in && strings.HasPrefix(tl, "- "):
				args = append(args, strings.Trim(strings.TrimPrefix(tl, "- "), `"'`))
			case in:
				in = false
			}
		}
		if len(args) == 0 {
			t.Log("deploy/kubernetes/daemonset.yaml has no args: the image's CMD applies")
		} else if err := cli.Parse(args); err != nil {
			t.Errorf("the DaemonSet's args %q do not parse: %v", args, err)
		}
	}

	// The Makefile builds the same way.
	mk, err := os.ReadFile(filepath.Join(repoRoot, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"CGO_ENABLED=0 go build -trimpath", "-X $(MODULE)/internal/cli.Version=$(VERSION)", "MODULE  := github.com/closewait/closewait", "git describe --tags --always --dirty"} {
		if !strings.Contains(string(mk), want) {
			t.Errorf("Makefile lacks %q", want)
		}
	}
}

// debFiles are the files the .deb installs (besides the docs).
var debFiles = []string{
	"/usr/bin/closewait",
	"/usr/share/man/man1/closewait.1.gz",
	"/usr/share/bash-completion/completions/closewait",
	"/usr/share/zsh/vendor-completions/_closewait",
	"/usr/share/fish/vendor_completions.d/closewait.fish",
	"/usr/share/doc/closewait/field-guide.md",
	"/usr/share/doc/closewait/copyright",
}

// TestDebInstallsAndRemoves builds the .deb with packaging/ (nfpm), installs
// it with dpkg, runs the installed binary, reads the man page and loads the
// completion, then removes and purges it and checks nothing is left.
func TestDebInstallsAndRemoves(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: installs a .deb with dpkg")
	}
	if _, err := exec.LookPath("dpkg"); err != nil {
		t.Skip("needs dpkg (a Debian-based system)")
	}
	if out, err := exec.Command("dpkg-query", "-W", "-f=${Status}", "closewait").Output(); err == nil && strings.Contains(string(out), "installed") && !strings.Contains(string(out), "not-installed") {
		t.Skipf("a closewait package is already installed here (%s): not replacing it", out)
	}
	dist := t.TempDir()
	build := exec.Command("go", "run", ".", "-version", "v0.9.0-test", "-out", dist)
	build.Dir = filepath.Join(repoRoot, "packaging")
	out, err := build.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("packaging: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("packaging: %v", err)
	}
	deb := strings.TrimSpace(string(out))
	if filepath.Base(deb) != "closewait_0.9.0~test_"+runtimeArch(t)+".deb" {
		t.Errorf("package file %s", deb)
	}
	t.Cleanup(func() { exec.Command("dpkg", "-P", "closewait").Run() })
	if out, err := exec.Command("dpkg", "-i", deb).CombinedOutput(); err != nil {
		t.Fatalf("dpkg -i: %v\n%s", err, out)
	}

	for _, f := range debFiles {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("installed package lacks %s: %v", f, err)
		}
	}
	checkStatic(t, "/usr/bin/closewait")
	r := runAt(t, "/usr/bin/closewait", "--version")
	if r.code != 0 || strings.TrimSpace(r.stdout) != "closewait v0.9.0-test" {
		t.Errorf("--version: exit %d, %q", r.code, r.stdout)
	}
	r = runAt(t, "/usr/bin/closewait", "--json")
	var rep report.JSONReport
	if r.code > 2 || json.Unmarshal([]byte(r.stdout), &rep) != nil || rep.Version != 1 {
		t.Errorf("--json: exit %d, version %d, stderr %s", r.code, rep.Version, r.stderr)
	}
	if _, err := exec.LookPath("man"); err != nil {
		t.Log("man is not installed: the man page is checked by TestManPage with groff if present")
	} else {
		page, err := manRender("/usr/share/man/man1/closewait.1.gz")
		if err != nil || !strings.Contains(page, "CLOSEWAIT(1)") || !strings.Contains(page, "closewait explain PID") {
			t.Errorf("man -l of the installed page: %v\n%.500s", err, page)
		}
	}
	if out, err := exec.Command("bash", "-c", "source /usr/share/bash-completion/completions/closewait && complete -p closewait").CombinedOutput(); err != nil || !strings.Contains(string(out), "-F _closewait closewait") {
		t.Errorf("installed bash completion: %v: %s", err, out)
	}
	units, _ := filepath.Glob(filepath.Join(repoRoot, "deploy", "systemd", "*.service"))
	for _, u := range units {
		installed := "/lib/systemd/system/" + filepath.Base(u)
		b, err := os.ReadFile(installed)
		if err != nil {
			t.Errorf("unit %s not installed: %v", filepath.Base(u), err)
			continue
		}
		if m := regexp.MustCompile(`(?m)^ExecStart=(\S+)`).FindSubmatch(b); m == nil || string(m[1]) != "/usr/bin/closewait" {
			t.Errorf("%s: ExecStart runs %q, want the packaged /usr/bin/closewait", installed, m)
		}
	}

	if out, err := exec.Command("dpkg", "-r", "closewait").CombinedOutput(); err != nil {
		t.Fatalf("dpkg -r: %v\n%s", err, out)
	}
	for _, f := range debFiles {
		if _, err := os.Stat(f); err == nil {
			t.Errorf("%s is still there after dpkg -r", f)
		}
	}
	if out, err := exec.Command("dpkg", "-P", "closewait").CombinedOutput(); err != nil {
		t.Fatalf("dpkg -P: %v\n%s", err, out)
	}
	if out, _ := exec.Command("dpkg-query", "-W", "-f=${Status}", "closewait").CombinedOutput(); strings.Contains(string(out), " installed") || strings.Contains(string(out), "config-files") {
		t.Errorf("after dpkg -P the package is still known: %s", out)
	}
	if _, err := os.Stat("/usr/share/doc/closewait"); err == nil {
		t.Error("/usr/share/doc/closewait is still there after dpkg -P")
	}
}

func runtimeArch(t *testing.T) string {
	out, err := exec.Command("go", "env", "GOARCH").Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

// runAt runs the binary at path (run uses the test's build).
func runAt(t *testing.T, path string, args ...string) result {
	t.Helper()
	saved := binary
	binary = path
	defer func() { binary = saved }()
	return run(t, nil, args...)
}

// manRender renders a man page file with man -l, 80 columns, no pager.
func manRender(path string) (string, error) {
	cmd := exec.Command("man", "-l", path)
	cmd.Env = append(os.Environ(), "MANWIDTH=80") // stdout is a pipe: no pager, no overstrike
	out, err := cmd.Output()
	return string(out), err
}
