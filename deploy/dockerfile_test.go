package deploy

import (
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// fromLine is a FROM of the Dockerfile: the image, tag and digest.
var fromLine = regexp.MustCompile(`^FROM\s+(\S+)`)

// pinned is an image reference with a tag, for the reader, and a digest,
// which decides what is pulled.
var pinned = regexp.MustCompile(`^[a-z0-9./-]+:[A-Za-z0-9._-]+@sha256:[0-9a-f]{64}$`)

// Every base image is pinned by digest, so that a rebuild of the same
// commit uses the same bases (a tag moves with each release of Go or
// Debian), and the build image's Go is the one go.mod asks for.
func TestDockerfilePinsItsBaseImages(t *testing.T) {
	raw, err := os.ReadFile("Dockerfile")
	require.NoError(t, err)
	require.NotContains(t, string(raw), "# syntax=", "a syntax directive pulls a frontend image of its own")
	var images []string
	for _, line := range strings.Split(string(raw), "\n") {
		if m := fromLine.FindStringSubmatch(line); m != nil {
			images = append(images, m[1])
		}
	}
	require.Len(t, images, 2, "a build stage and the runtime image")
	for _, image := range images {
		require.Regexp(t, pinned, image, "FROM %s: pin it as name:tag@sha256:digest", image)
	}

	mod, err := os.ReadFile("../go.mod")
	require.NoError(t, err)
	goLine := regexp.MustCompile(`(?m)^go (\d+)\.(\d+)\.(\d+)`).FindSubmatch(mod)
	require.NotNil(t, goLine, "go.mod has a go line with a patch release")
	tag := regexp.MustCompile(`^golang:(\d+)\.(\d+)\.(\d+)-`).FindStringSubmatch(images[0])
	require.NotNil(t, tag, "the build image %s names its Go release in full", images[0])
	// The image's Go does not fetch another toolchain (GOTOOLCHAIN=local):
	// it must be go.mod's release or a later patch of it.
	require.Equal(t, string(goLine[1])+"."+string(goLine[2]), tag[1]+"."+tag[2], "go.mod's Go release")
	require.GreaterOrEqual(t, atoi(t, tag[3]), atoi(t, string(goLine[3])), "the image's patch release is go.mod's or later")
}

func atoi(t *testing.T, s string) int {
	n, err := strconv.Atoi(s)
	require.NoError(t, err)
	return n
}
