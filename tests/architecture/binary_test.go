package architecture

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// BuildTags are the tags the daemon is built with (the Makefile's TAGS,
// the Dockerfile's go build): grpcnotrace leaves out golang.org/x/net/trace,
// whose html/template would otherwise be linked in.
const BuildTags = "grpcnotrace"

// The linker drops the exported methods nothing calls, unless the binary
// can call a method by name through reflection (text/template's Execute,
// html/template, reflect.Value.MethodByName): then it keeps every exported
// method of every type, about 10 MB of the daemon's 42 (issue 27). Any
// package that brings such a call back fails here, named by the linker's
// dependency dump.
func TestTheLinkerDropsUnusedMethods(t *testing.T) {
	if testing.Short() {
		t.Skip("links the daemon")
	}
	cmd := exec.Command("go", "build", "-tags", BuildTags, "-ldflags=-dumpdep", "-o", os.DevNull, "./cmd/teleport-event-handler")
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "%s", stderr.String())
	sc := bufio.NewScanner(bytes.NewReader(append(out, stderr.Bytes()...)))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if line := sc.Text(); strings.Contains(line, "<ReflectMethod>") {
			t.Fatalf("the linker keeps every exported method, because of %s: find who calls it (go build -ldflags=-dumpdep) "+
				"and call no template Execute or MethodByName in the daemon", line)
		}
	}
	require.NoError(t, sc.Err())
}
