package config

import (
	"os"
	"strings"
	"testing"
)

// The README's option tables are generated from the option table; this test
// fails when they drift apart. Regenerate with:
//
//	UPDATE_README=1 go test ./config -run TestREADMEListsEveryOption
func TestREADMEListsEveryOption(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	const begin, end = "<!-- options:begin -->\n", "<!-- options:end -->"
	s := string(readme)
	i, j := strings.Index(s, begin), strings.Index(s, end)
	if i < 0 || j < i {
		t.Fatalf("README.md lacks the %q ... %q markers", strings.TrimSpace(begin), end)
	}
	want := OptionsMarkdown()
	if got := s[i+len(begin) : j]; got != want {
		if os.Getenv("UPDATE_README") != "" {
			if err := os.WriteFile("../README.md", []byte(s[:i+len(begin)]+want+s[j:]), 0o644); err != nil {
				t.Fatal(err)
			}
			return
		}
		t.Fatalf("README.md option tables are out of date; run UPDATE_README=1 go test ./config -run TestREADMEListsEveryOption")
	}
}
