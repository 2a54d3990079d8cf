package config

import (
	"os"
	"strings"
	"testing"
)

// The option tables of docs/configuration.md are generated from the option
// table; this test fails when they drift apart. Regenerate with:
//
//	UPDATE_README=1 go test ./config -run TestREADMEListsEveryOption
func TestREADMEListsEveryOption(t *testing.T) {
	const doc = "../docs/configuration.md"
	readme, err := os.ReadFile(doc)
	if err != nil {
		t.Fatal(err)
	}
	const begin, end = "<!-- options:begin -->\n", "<!-- options:end -->"
	s := string(readme)
	i, j := strings.Index(s, begin), strings.Index(s, end)
	if i < 0 || j < i {
		t.Fatalf("%s lacks the %q ... %q markers", doc, strings.TrimSpace(begin), end)
	}
	want := OptionsMarkdown()
	if got := s[i+len(begin) : j]; got != want {
		if os.Getenv("UPDATE_README") != "" {
			if err := os.WriteFile(doc, []byte(s[:i+len(begin)]+want+s[j:]), 0o644); err != nil {
				t.Fatal(err)
			}
			return
		}
		t.Fatalf("%s option tables are out of date; run UPDATE_README=1 go test ./config -run TestREADMEListsEveryOption", doc)
	}
}
