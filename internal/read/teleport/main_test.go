package teleport

import (
	"testing"

	"github.com/fdfwd/teleport-event-handler/tests/leaktest"
)

func TestMain(m *testing.M) { leaktest.Main(m) }
