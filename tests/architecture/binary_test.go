package architecture

import (
	"bufio"
	"bytes"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// BuildTags are the tags the daemon is built with (the Makefile's TAGS,
// the Dockerfile's go build): grpcnotrace leaves out golang.org/x/net/trace,
// whose html/template would otherwise be linked in.
const BuildTags = "grpcnotrace"

// The linker drops the exported methods nothing calls, unless the binary
// can call a method by name through reflection: then it keeps every
// exported method of every type, about 10 MB of the daemon's 42 (issue 27).
// Every path that did so here ran through a template's Execute (text/template
// directly, or html/template from x/net/trace and an old trace's debug
// report), so the daemon must not link text/template's field evaluation.
// The test links the daemon unstripped and looks for it in the symbol
// table. (go build -ldflags=-dumpdep names the caller when it fails; the
// test does not use it because go replays a link's output from its cache:
// later builds of the same binary would print the dump.)
func TestTheLinkerDropsUnusedMethods(t *testing.T) {
	if testing.Short() {
		t.Skip("links the daemon")
	}
	bin := filepath.Join(t.TempDir(), "teleport-event-handler")
	build := exec.Command("go", "build", "-tags", BuildTags, "-o", bin, "./cmd/teleport-event-handler")
	build.Dir = root
	out, err := build.CombinedOutput()
	require.NoError(t, err, "%s", out)
	syms, err := exec.Command("go", "tool", "nm", bin).Output()
	require.NoError(t, err)
	const reflective = "text/template.(*state).evalField"
	sc := bufio.NewScanner(bytes.NewReader(syms))
	for sc.Scan() {
		if strings.HasSuffix(sc.Text(), " "+reflective) {
			t.Fatalf("the daemon links %s, which calls methods by name: the linker then keeps every exported method. "+
				"Find who executes a template with go build -ldflags=-dumpdep, and execute none in the daemon", reflective)
		}
	}
	require.NoError(t, sc.Err())
}
