// Package architecture checks the rules of ARCHITECTURE.md against the
// code: which package may import which, and that no production function is
// longer than a screen.
package architecture

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const module = "github.com/fdfwd/teleport-event-handler/"

// root is the repository, from this package's directory.
const root = "../.."

// MaxFunctionLines is the longest a production function may be.
const MaxFunctionLines = 80

// actors are the packages of the tree's actors: none imports another.
var actors = []string{"actors/checkpoint", "actors/export", "actors/lockpolicy", "actors/poller", "actors/pool", "actors/root", "actors/sessions"}

// allowed lists, for each package, the packages of this module it may
// import (the packages under tests/ are left out: they may use anything).
// ARCHITECTURE.md has the same table; change both together.
var allowed = map[string][]string{
	"kv":          nil,
	"backoff":     nil,
	"certs":       nil,
	"eventjson":   nil,
	"logging":     nil,
	"metrics":     nil,
	"teleport":    nil,
	"deploy":      nil,
	"persistence": {"kv"},
	"messages":    {"kv"},
	"fluentd":     {"backoff"},
	"config":      {"certs"},
	"configure":   {"certs", "config"},
	"takeover":    {"kv", "persistence", "teleport"},
	"status":      {"kv", "persistence"},
	"deadletters": {"backoff", "fluentd", "kv", "persistence"},
	"repair":      {"kv", "persistence"},

	"actors/faults":     nil,
	"actors/timer":      nil,
	"actors/supervisor": {"actors/faults", "actors/timer", "backoff", "metrics"},
	"actors/inflight":   {"eventjson", "messages", "metrics"},

	"actors/checkpoint": {"actors/supervisor", "actors/timer", "backoff", "kv", "messages", "metrics", "persistence"},
	"actors/pool":       {"actors/supervisor", "actors/timer", "fluentd", "messages", "metrics", "persistence"},
	"actors/poller":     {"actors/inflight", "actors/supervisor", "actors/timer", "backoff", "eventjson", "kv", "messages", "metrics", "persistence", "teleport"},
	"actors/export":     {"actors/inflight", "actors/supervisor", "actors/timer", "backoff", "kv", "messages", "metrics", "persistence", "teleport"},
	"actors/sessions":   {"actors/inflight", "actors/supervisor", "actors/timer", "backoff", "eventjson", "messages", "metrics", "persistence", "teleport"},
	"actors/lockpolicy": {"actors/supervisor", "actors/timer", "backoff", "kv", "messages", "metrics", "persistence"},
	"actors/root":       {"actors/supervisor", "actors/timer", "messages"},

	"daemon": {"actors/checkpoint", "actors/export", "actors/inflight", "actors/lockpolicy", "actors/poller", "actors/pool",
		"actors/root", "actors/sessions", "actors/supervisor", "backoff", "config", "fluentd", "kv", "logging", "metrics", "persistence", "status", "takeover", "teleport"},
	"cmd/teleport-event-handler": {"config", "configure", "daemon", "deadletters", "logging", "persistence", "repair", "status"},
}

// actorFree are the packages that import nothing of protoactor: the wire,
// the store, the metrics and the values the actors exchange stay usable
// outside the actor system.
var actorFree = []string{"kv", "backoff", "certs", "eventjson", "metrics", "teleport", "persistence", "fluentd", "config", "configure", "takeover", "status", "deadletters", "repair"}

// packages returns the production Go files of the module by package
// directory, without the test helpers under tests/.
func packages(t *testing.T) map[string][]*ast.File {
	t.Helper()
	fset := token.NewFileSet()
	out := map[string][]*ast.File{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() && (rel == "tests" || strings.HasPrefix(d.Name(), ".") && rel != ".") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		dir := filepath.ToSlash(filepath.Dir(rel))
		out[dir] = append(out[dir], f)
		positions[f] = fset
		return nil
	})
	require.NoError(t, err)
	return out
}

var positions = map[*ast.File]*token.FileSet{}

func imports(f *ast.File) []string {
	var out []string
	for _, imp := range f.Imports {
		p, _ := strconv.Unquote(imp.Path.Value)
		out = append(out, p)
	}
	return out
}

func TestPackagesImportOnlyWhatTheArchitectureAllows(t *testing.T) {
	for dir, files := range packages(t) {
		if strings.HasPrefix(dir, "actors/inflight/inflighttest") {
			continue // a test helper
		}
		rules, known := allowed[dir]
		require.True(t, known, "package %s is not in the import table of ARCHITECTURE.md (and of this test): add it to both", dir)
		for _, f := range files {
			for _, imp := range imports(f) {
				own, ok := strings.CutPrefix(imp, module)
				if ok && !slices.Contains(rules, own) {
					t.Errorf("%s imports %s, which ARCHITECTURE.md does not allow it to", dir, own)
				}
				if slices.Contains(actorFree, dir) && strings.HasPrefix(imp, "github.com/asynkron/protoactor-go") {
					t.Errorf("%s imports %s: it is to stay free of the actor system", dir, imp)
				}
			}
		}
	}
}

func TestActorsDoNotImportEachOther(t *testing.T) {
	for _, a := range actors {
		for _, other := range allowed[a] {
			require.False(t, slices.Contains(actors, other), "%s may not import its sibling %s: siblings talk through messages", a, other)
		}
	}
}

func TestFunctionsFitOnAScreen(t *testing.T) {
	for dir, files := range packages(t) {
		for _, f := range files {
			fset := positions[f]
			for _, d := range f.Decls {
				fd, ok := d.(*ast.FuncDecl)
				if !ok || fd.Body == nil {
					continue
				}
				start, end := fset.Position(fd.Pos()), fset.Position(fd.End())
				if n := end.Line - start.Line + 1; n > MaxFunctionLines {
					t.Errorf("%s: %s is %d lines, more than %d: split it (%s)", dir, fd.Name.Name, n, MaxFunctionLines, start)
				}
			}
		}
	}
}
