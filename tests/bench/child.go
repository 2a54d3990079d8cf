package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// child is a helper process.
type child struct {
	name string
	cmd  *exec.Cmd
	in   io.WriteCloser
	out  *bufio.Scanner
	// Ready is the rest of the helper's "ready" line (its address).
	Ready string
}

func startChild(o *options, role string, extra ...string) (*child, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	args := append([]string{"-role", role, "-pki", o.pki}, o.plan.args()...)
	cmd := exec.Command(self, append(args, extra...)...)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	outR, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &child{name: role, cmd: cmd, in: in, out: bufio.NewScanner(outR)}
	line, err := c.read()
	if err != nil {
		return nil, fmt.Errorf("%s helper: %w", role, err)
	}
	if !strings.HasPrefix(line, "ready") {
		return nil, fmt.Errorf("%s helper said %q", role, line)
	}
	c.Ready = strings.TrimSpace(strings.TrimPrefix(line, "ready"))
	return c, nil
}

func (c *child) read() (string, error) {
	if !c.out.Scan() {
		if err := c.out.Err(); err != nil {
			return "", err
		}
		return "", fmt.Errorf("%s helper exited", c.name)
	}
	return c.out.Text(), nil
}

func (c *child) ask(cmd string) (string, error) {
	if _, err := fmt.Fprintln(c.in, cmd); err != nil {
		return "", err
	}
	return c.read()
}

// stop closes the helper's stdin and waits for it; it returns its CPU time.
func (c *child) stop() float64 {
	c.in.Close()
	done := make(chan struct{})
	go func() { _ = c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = c.cmd.Process.Kill()
		<-done
	}
	if c.cmd.ProcessState == nil {
		return 0
	}
	cpu, _ := rusage(c.cmd.ProcessState)
	return cpu
}

func rusage(ps *os.ProcessState) (cpuSeconds float64, maxRSSMB float64) {
	ru, ok := ps.SysUsage().(*syscall.Rusage)
	if !ok {
		return 0, 0
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime), float64(ru.Maxrss) / 1024 // Linux: KiB
}

// scrape returns the samples of /metrics by name and labels, like
// harness.Scrape but uncompressed: gzip would cost the daemon more than the
// scrape itself.
func scrape(addr string) map[string]float64 {
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil
	}
	req.Header.Set("Accept-Encoding", "identity")
	resp, err := scrapeClient.Do(req)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if i := strings.LastIndexByte(line, ' '); i > 0 {
			if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
				out[line[:i]] = v
			}
		}
	}
	if sc.Err() != nil {
		return nil
	}
	return out
}

var scrapeClient = &http.Client{Timeout: 5 * time.Second}

// procHWM is the peak resident set size of a running process so far, in
// MB, from /proc (VmHWM). The rusage of a child is no good for that: Go
// starts children with CLONE_VM, and Linux counts the parent's resident
// set at the exec into the child's peak.
func procHWM(pid int) float64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				kb, _ := strconv.ParseFloat(f[0], 64)
				return kb / 1024
			}
		}
	}
	return 0
}

// procCPU is the CPU time of a running process so far, from /proc.
func procCPU(pid int) float64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The fields after the command name (which may hold spaces).
	f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+2:]))
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / 100 // USER_HZ
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime)
}
