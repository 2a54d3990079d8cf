package config

import (
	"fmt"
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
	want := optionsMarkdown()
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

// optionsMarkdown renders the options of start as Markdown tables, one per
// group: the rows of docs/configuration.md, which are generated, not
// written. It lives with the test because the daemon has no use for it.
func optionsMarkdown() string {
	var b strings.Builder
	for i, g := range groups {
		if i > 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "**%s**\n\n", g)
		b.WriteString("| flag | environment | TOML key | default | meaning |\n|---|---|---|---|---|\n")
		for _, o := range options {
			if o.group != g {
				continue
			}
			def := o.defaultText()
			switch {
			case def == "" && o.isSwitch():
				def = "false"
			case def == "":
				def = "-"
			}
			env := make([]string, len(o.env))
			for j, e := range o.env {
				env[j] = "`" + e + "`"
			}
			keys := make([]string, len(o.keys))
			for j, k := range o.keys {
				keys[j] = "`" + k + "`"
			}
			flag := "`--" + o.flag + "`"
			if o.lead != "" {
				flag = "`--" + o.lead + "`, `--" + o.flag + "`"
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", flag, strings.Join(env, ", "), strings.Join(keys, ", "), def, strings.ReplaceAll(o.help, "<", "&lt;"))
		}
	}
	return b.String()
}
