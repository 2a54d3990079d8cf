package config

// The configuration file (-c, FDFWD_CONFIG): the TOML keys of the options,
// each value's text as the other sources give it, and where in the file it
// stands, for the errors.

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// file is a parsed TOML configuration file.
type file struct {
	path string
	text string
	tree map[string]any
}

func loadFile(s setting) (*file, error) {
	path := s.text
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &Error{Option: "--config", Value: path, Source: s.src, Problem: err.Error(),
			Fix: "check the path and that it is readable by this user"}
	}
	f := &file{path: path, text: string(data)}
	md, err := toml.Decode(f.text, &f.tree)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			problem := "invalid TOML: " + pe.Message
			if key := f.keyOnLine(pe.Position.Line); key != "" {
				problem += " (key " + key + ")"
			} else if pe.LastKey != "" {
				problem += " (after key " + pe.LastKey + ")"
			}
			return nil, &Error{Option: "config file", Source: fmt.Sprintf("file %s, line %d", path, pe.Position.Line),
				Problem: problem, Fix: "correct the TOML syntax"}
		}
		return nil, &Error{Option: "config file", Source: "file " + path, Problem: err.Error(), Fix: "correct the TOML"}
	}
	if err := f.checkKeys(md.Keys()); err != nil {
		return nil, err
	}
	return f, nil
}

// checkKeys refuses keys that set nothing: a misspelt key would otherwise be
// ignored silently and leave the default in place. The tree was decoded into
// a map, which marks every key decoded, so MetaData.Undecoded cannot tell;
// the table of options can.
func (f *file) checkKeys(keys []toml.Key) error {
	values, tables := map[string]bool{}, map[string]bool{}
	for _, o := range options {
		for _, k := range o.keys {
			values[k] = true
			for i := strings.LastIndex(k, "."); i > 0; i = strings.LastIndex(k[:i], ".") {
				tables[k[:i]] = true
			}
		}
	}
	for _, key := range keys {
		name := strings.Join(key, ".")
		switch {
		case values[name]:
		case tables[name]:
			if v, _ := f.get(name); !isTable(v) {
				return &Error{Option: name, Source: f.source(name), Problem: "must be a table",
					Fix: "write it as [" + name + "] followed by its keys"}
			}
		default:
			return &Error{Option: name, Source: f.source(name), Problem: "unknown key",
				Fix: "remove it or correct its spelling (keys are case-sensitive)"}
		}
	}
	return nil
}

// lookup returns the text that sets o in the file, if any.
func (f *file) lookup(o *option) (setting, bool, error) {
	var found []string
	for _, k := range o.keys {
		if _, ok := f.get(k); ok {
			found = append(found, k)
		}
	}
	if len(found) == 0 {
		return setting{}, false, nil
	}
	if len(found) > 1 {
		return setting{}, false, &Error{Option: found[1], Source: f.source(found[1]),
			Problem: "sets the same option as " + found[0], Fix: "keep only one of them"}
	}
	key := found[0]
	v, _ := f.get(key)
	s := setting{src: f.source(key), key: key}
	_, isList := o.field(&Config{}).(*[]string)
	text, problem, fix := tomlText(v, isList)
	if problem != "" {
		return setting{}, false, &Error{Option: "--" + o.flag, Value: fmt.Sprint(v), Source: s.src, key: key,
			Problem: problem, Fix: fix}
	}
	s.text = text
	return s, true, nil
}

// get returns the value at a dotted key path.
func (f *file) get(key string) (any, bool) {
	var v any = f.tree
	for part := range strings.SplitSeq(key, ".") {
		table, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = table[part]; !ok {
			return nil, false
		}
	}
	return v, true
}

// source is the Error.Source of a key: the file and, if found, the line.
func (f *file) source(key string) string {
	if line := f.line(strings.Split(key, ".")); line > 0 {
		return fmt.Sprintf("file %s, line %d", f.path, line)
	}
	return "file " + f.path
}

// line finds the line that sets key, or 0. BurntSushi/toml keeps key
// positions private, so this follows table headers and key assignments,
// which covers the way configuration files are written.
func (f *file) line(key []string) int {
	var table []string
	for i, l := range strings.Split(f.text, "\n") {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "[") {
			end := strings.Index(l, "]")
			if end < 0 {
				continue
			}
			table = splitKey(strings.Trim(l[:end], "[]"))
			if slices.Equal(table, key) {
				return i + 1
			}
			continue
		}
		lhs, rhs, ok := strings.Cut(l, "=")
		if !ok || strings.HasPrefix(l, "#") {
			continue
		}
		full := append(slices.Clone(table), splitKey(lhs)...)
		if slices.Equal(full, key) {
			return i + 1
		}
		// An inline table: lock = { enabled = true }.
		if len(full) < len(key) && slices.Equal(full, key[:len(full)]) && strings.HasPrefix(strings.TrimSpace(rhs), "{") {
			return i + 1
		}
	}
	return 0
}

// keyOnLine returns the key assigned on a line, if it looks like it.
func (f *file) keyOnLine(n int) string {
	lines := strings.Split(f.text, "\n")
	if n < 1 || n > len(lines) {
		return ""
	}
	lhs, _, ok := strings.Cut(lines[n-1], "=")
	lhs = strings.TrimSpace(lhs)
	if !ok || lhs == "" || strings.ContainsAny(lhs, "#[\"'") {
		return ""
	}
	return lhs
}

func splitKey(s string) []string {
	parts := strings.Split(s, ".")
	for i, p := range parts {
		parts[i] = strings.Trim(strings.TrimSpace(p), `"'`)
	}
	return parts
}

func isTable(v any) bool {
	_, ok := v.(map[string]any)
	return ok
}

// tomlText turns a TOML value into the text a flag would have carried, so
// that one parser serves every source. Lists may be arrays or "a,b" strings.
func tomlText(v any, isList bool) (text, problem, fix string) {
	switch v := v.(type) {
	case string:
		return v, "", ""
	case bool:
		return strconv.FormatBool(v), "", ""
	case int64:
		return strconv.FormatInt(v, 10), "", ""
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64), "", ""
	case time.Time:
		return v.Format(time.RFC3339Nano), "", ""
	case []any:
		if !isList {
			return "", "an array where a single value is expected", "write a single value"
		}
		items := make([]string, len(v))
		for i, item := range v {
			s, ok := item.(string)
			if !ok {
				return "", "list items must be strings", `write it as ["a", "b"] or "a,b"`
			}
			items[i] = s
		}
		return strings.Join(items, ","), "", ""
	case map[string]any:
		return "", "a table where a value is expected", "write a single value"
	}
	return "", fmt.Sprintf("unsupported TOML value of type %T", v), "write a string, number or boolean"
}
