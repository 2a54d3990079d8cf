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
	"persistence/kv":                    nil,
	"internal/backoff":                  nil,
	"internal/commands/configure/certs": nil,
	"internal/eventwire":                nil,
	"internal/deliver/eventjson":        {"internal/eventwire"},
	"internal/logging":                  nil,
	"internal/operate/metrics":          nil,
	"internal/read/teleport":            {"internal/eventwire"},
	"deploy":                            nil,
	"persistence":                       {"persistence/kv"},
	"messages":                          {"persistence/kv"},
	"internal/deliver/wire":             {"internal/backoff"},
	"internal/deliver/wire/jsonhttp":    {"internal/deliver/wire"},
	"internal/deliver/eventmsgpack":     {"internal/deliver/eventjson", "internal/eventwire"},
	"internal/deliver/wire/forward":     {"internal/deliver/eventmsgpack", "internal/deliver/wire"},
	"internal/deliver/wire/syslog":      {"internal/deliver/wire"},
	"internal/deliver/eventsyslog":      {"internal/deliver/eventjson", "internal/eventwire"},
	"config":                            nil,
	"internal/commands/configure":       {"internal/commands/configure/certs", "config"},
	"internal/state/takeover":           {"persistence/kv", "persistence", "internal/read/teleport"},
	"internal/operate/status":           {"persistence/kv", "persistence"},
	"internal/commands/deadletters":     {"internal/backoff", "internal/deliver/wire", "persistence/kv", "persistence"},
	"internal/commands/repair":          {"persistence/kv", "persistence"},

	"actors/faults":     nil,
	"actors/timer":      nil,
	"actors/supervisor": {"actors/faults", "actors/timer", "internal/backoff", "internal/operate/metrics"},
	"actors/inflight":   {"internal/deliver/eventjson", "messages", "internal/operate/metrics"},

	"actors/checkpoint": {"actors/supervisor", "actors/timer", "internal/backoff", "persistence/kv", "messages", "internal/operate/metrics", "persistence"},
	"actors/pool":       {"actors/supervisor", "actors/timer", "internal/deliver/eventmsgpack", "internal/deliver/eventsyslog", "internal/deliver/wire", "messages", "internal/operate/metrics", "persistence"},
	"actors/poller":     {"actors/inflight", "actors/supervisor", "actors/timer", "internal/backoff", "persistence/kv", "messages", "internal/operate/metrics", "persistence", "internal/read/teleport"},
	"actors/export":     {"actors/inflight", "actors/supervisor", "actors/timer", "internal/backoff", "persistence/kv", "messages", "internal/operate/metrics", "persistence", "internal/read/teleport"},
	"actors/sessions":   {"actors/inflight", "actors/supervisor", "actors/timer", "internal/backoff", "internal/eventwire", "messages", "internal/operate/metrics", "persistence", "internal/read/teleport"},
	"actors/lockpolicy": {"actors/supervisor", "actors/timer", "internal/backoff", "internal/eventwire", "persistence/kv", "messages", "internal/operate/metrics", "persistence"},
	"actors/root":       {"actors/supervisor", "actors/timer", "messages"},

	"internal/daemon": {"actors/checkpoint", "actors/export", "actors/inflight", "actors/lockpolicy", "actors/poller", "actors/pool",
		"actors/root", "actors/sessions", "actors/supervisor", "internal/backoff", "config", "internal/deliver/eventjson", "internal/deliver/eventmsgpack", "internal/deliver/eventsyslog", "internal/deliver/wire", "internal/deliver/wire/forward", "internal/deliver/wire/jsonhttp", "internal/deliver/wire/syslog", "persistence/kv", "internal/logging", "internal/operate/metrics", "persistence", "internal/operate/status", "internal/state/takeover", "internal/read/teleport"},
	"cmd/teleport-event-handler": {"config", "internal/commands/configure", "internal/daemon", "internal/commands/deadletters", "internal/logging", "persistence", "internal/commands/repair", "internal/operate/status"},
}

// actorFree are the packages that import nothing of protoactor: the wire,
// the store, the metrics and the values the actors exchange stay usable
// outside the actor system.
var actorFree = []string{"persistence/kv", "internal/backoff", "internal/commands/configure/certs", "internal/deliver/eventjson", "internal/deliver/eventmsgpack", "internal/eventwire", "internal/operate/metrics", "internal/read/teleport", "persistence", "internal/deliver/wire", "internal/deliver/wire/jsonhttp", "internal/deliver/wire/forward", "internal/deliver/wire/syslog", "internal/deliver/eventsyslog", "config", "internal/commands/configure", "internal/state/takeover", "internal/operate/status", "internal/commands/deadletters", "internal/commands/repair"}

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

// An event that came through eventwire.Codec has its fields as bytes and
// no Struct: code reading the Struct itself would see an empty event, and
// send or judge it so. Only eventwire reads it.
func TestOnlyEventwireReadsTheEventsStruct(t *testing.T) {
	for dir, files := range packages(t) {
		if dir == "internal/eventwire" {
			continue
		}
		for _, f := range files {
			ast.Inspect(f, func(n ast.Node) bool {
				if sel, ok := n.(*ast.SelectorExpr); ok && (sel.Sel.Name == "Unstructured" || sel.Sel.Name == "GetUnstructured") {
					t.Errorf("%s reads an event's Struct (.%s): use eventwire (Walk, Field)", positions[f].Position(sel.Pos()), sel.Sel.Name)
				}
				return true
			})
		}
	}
}

// The command line is the program's: config resolves an option's text from
// any source, and the commands' flags and parser live in cmd.
func TestOnlyTheProgramParsesTheCommandLine(t *testing.T) {
	for dir, files := range packages(t) {
		for _, f := range files {
			if slices.Contains(imports(f), "github.com/jessevdk/go-flags") {
				require.Equal(t, "cmd/teleport-event-handler", dir, "%s parses a command line: that is cmd/teleport-event-handler's", dir)
			}
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

// roles are the subsystems of the layout, by path prefix (the longest
// prefix wins), and mayImport the roles each may import besides its own:
// the import table's rows by role. ARCHITECTURE.md has the same rows.
var roles = map[string]string{
	"cmd":                "commands",
	"internal/commands":  "commands",
	"config":             "config",
	"internal/daemon":    "run",
	"actors":             "actors",
	"messages":           "actors",
	"internal/read":      "read",
	"internal/deliver":   "deliver",
	"persistence":        "state",
	"internal/state":     "state",
	"internal/operate":   "operate",
	"internal/backoff":   "shared",
	"internal/logging":   "shared",
	"internal/eventwire": "shared",
	"deploy":             "deploy", // its tests only
}

var mayImport = map[string][]string{
	"shared":   nil,
	"deploy":   nil,
	"read":     {"shared"},
	"deliver":  {"shared"},
	"state":    {"read", "shared"},
	"operate":  {"state", "shared"},
	"config":   nil,
	"actors":   {"read", "deliver", "state", "operate", "shared"},
	"run":      {"actors", "read", "deliver", "state", "operate", "config", "shared"},
	"commands": {"run", "deliver", "state", "operate", "config", "shared"},
}

func roleOf(dir string) string {
	best, role := "", ""
	for prefix, r := range roles {
		if (dir == prefix || strings.HasPrefix(dir, prefix+"/")) && len(prefix) > len(best) {
			best, role = prefix, r
		}
	}
	return role
}

// The layout's roles hold over the import table (which the code is held
// to): reading and delivering know nothing of each other, the wire imports
// no actor, state and operations know nothing of the actors, and the
// commands beside start never reach into the actors (only cmd runs the
// daemon).
func TestRolesOfTheLayout(t *testing.T) {
	for dir, imports := range allowed {
		role := roleOf(dir)
		require.NotEmpty(t, role, "package %s has no role: add its prefix to roles", dir)
		for _, imp := range imports {
			other := roleOf(imp)
			if other != role && !slices.Contains(mayImport[role], other) {
				t.Errorf("%s (%s) imports %s (%s): %s may import only %v", dir, role, imp, other, role, mayImport[role])
			}
			if strings.HasPrefix(dir, "internal/commands/") && imp == "internal/daemon" {
				t.Errorf("%s imports the daemon: only cmd runs it", dir)
			}
		}
	}
}

// MaxFileLines is the longest a production file may be, and
// MaxTopLevelFolders the most top-level folders with Go code besides
// tests/: the layout groups by subsystem under internal/ instead.
const (
	MaxFileLines       = 600
	MaxTopLevelFolders = 10
)

func TestTheTreeStaysByTheLayout(t *testing.T) {
	top := map[string]bool{}
	for dir, files := range packages(t) {
		first, _, _ := strings.Cut(dir, "/")
		top[first] = true
		for _, f := range files {
			fset := positions[f]
			if n := fset.Position(f.End()).Line; n > MaxFileLines {
				t.Errorf("%s has %d lines, more than %d: split it where its parts are", fset.Position(f.Pos()).Filename, n, MaxFileLines)
			}
		}
	}
	require.LessOrEqual(t, len(top), MaxTopLevelFolders, "top-level Go folders: %v; group by subsystem under internal/", top)
}
