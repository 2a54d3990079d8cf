package config

import (
	"fmt"
	"strings"
)

// OptionsMarkdown renders the options of start as Markdown tables, one per
// group, for docs/configuration.md (a test keeps it in step with this).
func OptionsMarkdown() string {
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
			fmt.Fprintf(&b, "| `--%s` | %s | %s | %s | %s |\n", o.flag, strings.Join(env, ", "), strings.Join(keys, ", "), def, strings.ReplaceAll(o.help, "<", "&lt;"))
		}
	}
	return b.String()
}
