package persistence

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Holders are the processes that hold the state file in dir locked, as
// the kernel lists them in /proc/locks (bbolt locks the file with flock):
// what an ErrLocked can name for the operator. None when the kernel does
// not say; a holder in another PID namespace (another container) has PID 0.
func Holders(dir string) []Holder {
	info, err := os.Stat(filepath.Join(dir, FileName))
	if err != nil {
		return nil
	}
	file, ok := lockName(info)
	if !ok {
		return nil
	}
	raw, err := os.ReadFile("/proc/locks")
	if err != nil {
		return nil
	}
	return lockHolders(raw, file)
}

// Holder is a process holding the state file locked.
type Holder struct {
	PID  int      // 0: in another PID namespace
	Args []string // its command line; nil when unknown
}

// lockHolders reads /proc/locks: "1: FLOCK  ADVISORY  WRITE 4242 fe:00:1234 0 EOF",
// one line per lock held ("->" marks a process waiting for one).
func lockHolders(locks []byte, file string) []Holder {
	var out []Holder
	seen := map[int]bool{}
	sc := bufio.NewScanner(bytes.NewReader(locks))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 6 || f[1] == "->" || f[5] != file {
			continue
		}
		pid, err := strconv.Atoi(f[4])
		if err != nil || seen[pid] {
			continue
		}
		seen[pid] = true
		out = append(out, Holder{PID: pid, Args: commandLine(pid)})
	}
	return out
}

// commandLine is the command line of pid, nil when it cannot be read.
func commandLine(pid int) []string {
	if pid <= 0 {
		return nil
	}
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || len(raw) == 0 {
		return nil
	}
	return strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
}
