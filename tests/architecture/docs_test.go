package architecture

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode"

	"github.com/stretchr/testify/require"
)

// MaxREADMELines is the longest README.md may be, so that it is read in one
// sitting: reference material goes to a page in docs/, linked from it.
const MaxREADMELines = 500

var (
	// linkTarget is the target of an inline link or image, [text](target).
	linkTarget = regexp.MustCompile(`\]\(([^)\s]+)(?:\s+"[^"]*")?\)`)
	// inlineCode is a code span, in which brackets are not links.
	inlineCode = regexp.MustCompile("`[^`]*`")
	// linkText is a link, whose text alone makes a heading's anchor.
	linkText = regexp.MustCompile(`\[([^\]]*)\]\([^)]*\)`)
)

// prose returns the lines of a Markdown file outside fenced code blocks.
func prose(text string) []string {
	var out []string
	fenced := false
	for line := range strings.SplitSeq(text, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			fenced = !fenced
			continue
		}
		if !fenced {
			out = append(out, line)
		}
	}
	return out
}

// headings returns the headings of a Markdown file of the given level, or
// of any level when level is 0, as their text.
func headings(text string, level int) []string {
	var out []string
	for _, line := range prose(text) {
		hashes := len(line) - len(strings.TrimLeft(line, "#"))
		if hashes == 0 || hashes > 6 || !strings.HasPrefix(line[hashes:], " ") || (level != 0 && hashes != level) {
			continue
		}
		out = append(out, strings.TrimSpace(line[hashes:]))
	}
	return out
}

// anchor is the anchor GitHub gives a heading: its text in lower case,
// punctuation but hyphens and underscores dropped, spaces made hyphens.
func anchor(heading string) string {
	heading = linkText.ReplaceAllString(heading, "$1")
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// anchors returns every anchor of a Markdown file; a repeated heading gets
// -1, -2, ... as on GitHub.
func anchors(text string) map[string]bool {
	out := map[string]bool{}
	seen := map[string]int{}
	for _, h := range headings(text, 0) {
		a := anchor(h)
		if n := seen[a]; n > 0 {
			seen[a]++
			a += "-" + strconv.Itoa(n)
		} else {
			seen[a] = 1
		}
		out[a] = true
	}
	return out
}

// docs returns README.md and the pages of docs/, by their path from this
// package's directory.
func docs(t *testing.T) map[string]string {
	t.Helper()
	pages, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	require.NoError(t, err)
	out := map[string]string{}
	for _, path := range append([]string{filepath.Join(root, "README.md")}, pages...) {
		raw, err := os.ReadFile(path)
		require.NoError(t, err)
		out[path] = string(raw)
	}
	return out
}

// Every relative link of README.md and docs/ names a file that exists, and
// every #anchor one of that file's headings, so that moving a section does
// not leave a link behind.
func TestDocsLinksResolve(t *testing.T) {
	for path, text := range docs(t) {
		name, _ := filepath.Rel(root, path)
		for _, line := range prose(text) {
			for _, m := range linkTarget.FindAllStringSubmatch(inlineCode.ReplaceAllString(line, ""), -1) {
				target := m[1]
				if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
					continue
				}
				file, frag, _ := strings.Cut(target, "#")
				dest := path
				if file != "" {
					dest = filepath.Join(filepath.Dir(path), file)
				}
				raw, err := os.ReadFile(dest)
				if file != "" && err != nil {
					if info, statErr := os.Stat(dest); statErr != nil || !info.IsDir() || frag != "" {
						t.Errorf("%s links to %s, which does not exist", name, target)
					}
					continue
				}
				if frag != "" && !anchors(string(raw))[frag] {
					t.Errorf("%s links to %s, which has no heading with the anchor #%s", name, target, frag)
				}
			}
		}
	}
}

// README.md is read in one sitting: at most MaxREADMELines lines, with a
// table of contents that lists every level-2 heading.
func TestREADMEIsShortWithContents(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(root, "README.md"))
	require.NoError(t, err)
	text := string(raw)
	lines := strings.Count(text, "\n")
	require.LessOrEqual(t, lines, MaxREADMELines,
		"README.md has %d lines: move reference material to a page in docs/ and link it", lines)

	const contents = "## Contents\n"
	i := strings.Index(text, contents)
	require.True(t, i >= 0, "README.md has no %q section", strings.TrimSpace(contents))
	toc := text[i+len(contents):]
	if j := strings.Index(toc, "\n## "); j >= 0 {
		toc = toc[:j]
	}
	for _, h := range headings(text, 2) {
		if h != "Contents" && !strings.Contains(toc, "(#"+anchor(h)+")") {
			t.Errorf("README.md's contents do not list the section %q (#%s)", h, anchor(h))
		}
	}
}
