package explore

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestSameSeedSamePlan(t *testing.T) {
	for seed := range uint64(50) {
		require.Equal(t, NewPlan(seed, false), NewPlan(seed, false))
		require.Equal(t, NewPlan(seed, true), NewPlan(seed, true))
	}
	require.NotEqual(t, NewPlan(1, false).Timeline(), NewPlan(2, false).Timeline())
}

// Every kind of fault is drawn, within a few hundred seeds, each within the
// span, and faults on one knob never overlap.
func TestPlansDrawEveryKindWithoutOverlaps(t *testing.T) {
	seen := map[Kind]int{}
	for seed := range uint64(300) {
		p := NewPlan(seed, false)
		if p.Rejected > 0 {
			seen[Reject4xx]++
		}
		for i, f := range p.Faults {
			seen[f.Kind]++
			require.LessOrEqual(t, f.At+f.For, p.Span, "seed %d: %s", seed, f)
			for _, g := range p.Faults[i+1:] {
				if knob[f.Kind] == knob[g.Kind] {
					require.GreaterOrEqual(t, g.At, f.At+max(f.For, 1e9), "seed %d: %s overlaps %s", seed, f, g)
				}
			}
		}
	}
	for _, k := range kinds {
		require.Positive(t, seen[k], "%s never drawn", k)
	}
}

func TestCutShrinksAPlanAndReplays(t *testing.T) {
	p := NewPlan(7, false)
	q, err := p.Cut("f0")
	require.NoError(t, err)
	require.Equal(t, p.Faults[1:], q.Faults)
	q, err = q.Cut("f0,a60")
	require.NoError(t, err)
	require.Equal(t, p.Faults[2:], q.Faults)
	require.Equal(t, min(60, p.Audit), q.Audit)
	require.Equal(t, "make explore SEED=7 EXPLORE_CUT=f0,f0,a60", replayCommand(q))
	r, err := NewPlan(7, false).Cut("f0,f0,a60")
	require.NoError(t, err)
	require.Equal(t, q, r, "the replay command draws the same plan")
	_, err = p.Cut("f99")
	require.Error(t, err)
	_, err = p.Cut("x1")
	require.Error(t, err)
}
