package architecture

import (
	"go/ast"
	"go/token"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// zerologFields are the methods of a zerolog event or context that add a
// field named by their first argument.
var zerologFields = []string{"Str", "Strs", "Int", "Int64", "Uint64", "Uint", "Float64", "Dur", "Time", "Bool",
	"Stringer", "Interface", "Any", "AnErr", "Ints", "Hex", "RawJSON", "Dict", "Object", "Array", "Errs"}

// logFields are the literal field names the production code logs, with
// where each is first used.
func logFields(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, files := range packages(t) {
		for _, f := range files {
			ast.Inspect(f, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok || len(call.Args) == 0 {
					return true
				}
				sel, ok := call.Fun.(*ast.SelectorExpr)
				lit, isLit := call.Args[0].(*ast.BasicLit)
				if !ok || !isLit || lit.Kind != token.STRING || !slices.Contains(zerologFields, sel.Sel.Name) {
					return true
				}
				name, _ := strconv.Unquote(lit.Value)
				if _, seen := out[name]; !seen {
					out[name] = positions[f].Position(lit.Pos()).String()
				}
				return true
			})
		}
	}
	return out
}

// Every field name in the log lines is in docs/logs.md's table of them, so
// that one thing has one name whichever actor logs it (and a log pipeline
// can rely on it), and no documented name is unused.
func TestLogFieldsAreOneVocabularyDocumented(t *testing.T) {
	doc, err := os.ReadFile(root + "/docs/logs.md")
	require.NoError(t, err)
	begin, end := "<!-- log-fields:begin -->", "<!-- log-fields:end -->"
	s := string(doc)
	i, j := strings.Index(s, begin), strings.Index(s, end)
	require.True(t, i >= 0 && j > i, "docs/logs.md lacks the %s ... %s markers", begin, end)
	documented := map[string]bool{}
	for _, row := range regexp.MustCompile("(?m)^\\| ([^|]+) \\|").FindAllStringSubmatch(s[i:j], -1) {
		for _, name := range regexp.MustCompile("`([a-z_]+)`").FindAllStringSubmatch(row[1], -1) {
			documented[name[1]] = true
		}
	}
	used := logFields(t)
	for name, where := range used {
		if !documented[name] && name != "level" && name != "time" && name != "message" && name != "error" {
			t.Errorf("the log field %q (%s) is not in docs/logs.md's table of log fields: use an existing name for the same thing, or add it", name, where)
		}
	}
	for name := range documented {
		if _, ok := used[name]; !ok && name != "level" && name != "time" && name != "message" && name != "error" {
			t.Errorf("docs/logs.md documents the log field %q, which no log line has", name)
		}
	}
}
