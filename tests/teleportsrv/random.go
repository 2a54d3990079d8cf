package teleportsrv

import (
	"math"
	"math/rand/v2"
	"strings"

	"google.golang.org/protobuf/types/known/structpb"
)

// RandomStruct returns an event's Struct of odd values, nested up to depth,
// for the encoders' tests: strings with what JSON escapes and invalid
// UTF-8, numbers of every size (integers past 2^53 and 2^64, fractions,
// tiny and huge exponents), nulls, empty objects and lists.
func RandomStruct(rng *rand.Rand, depth int) *structpb.Struct {
	s := &structpb.Struct{Fields: map[string]*structpb.Value{}}
	for range rng.IntN(8) {
		s.Fields[randomString(rng)] = randomValue(rng, depth)
	}
	return s
}

func randomValue(rng *rand.Rand, depth int) *structpb.Value {
	switch k := rng.IntN(8); {
	case k == 0:
		return structpb.NewNullValue()
	case k == 1:
		return structpb.NewBoolValue(rng.IntN(2) == 0)
	case k == 2:
		return structpb.NewNumberValue(math.Float64frombits(rng.Uint64()&^(0x7ff<<52)) * math.Pow(10, float64(rng.IntN(60)-30)))
	case k == 3 && depth > 0:
		return structpb.NewStructValue(RandomStruct(rng, depth-1))
	case k == 4 && depth > 0:
		l := &structpb.ListValue{}
		for range rng.IntN(5) {
			l.Values = append(l.Values, randomValue(rng, depth-1))
		}
		return structpb.NewListValue(l)
	case k == 5:
		return structpb.NewNumberValue(randomInteger(rng))
	default:
		return structpb.NewStringValue(randomString(rng))
	}
}

// randomInteger is a float64 with no fraction, from 0 to past 1e21, either
// sign: around 2^53, 2^63 and 2^64 the JSON's digits are not the value's.
func randomInteger(rng *rand.Rand) float64 {
	f := math.Trunc(math.Ldexp(rng.Float64(), rng.IntN(72)))
	if rng.IntN(2) == 0 {
		f = -f
	}
	return f
}

func randomString(rng *rand.Rand) string {
	const alphabet = "abc<>&\"\\/\n\t\x01 é✓\u2028🙂"
	var b strings.Builder
	runes := []rune(alphabet)
	for range rng.IntN(12) {
		if rng.IntN(20) == 0 {
			b.WriteByte(byte(0x80 + rng.IntN(0x80))) // a stray continuation byte
			continue
		}
		b.WriteRune(runes[rng.IntN(len(runes))])
	}
	return b.String()
}
