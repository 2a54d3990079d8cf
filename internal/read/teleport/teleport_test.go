package teleport

import (
	"context"
	"fmt"
	"testing"

	"github.com/gravitational/teleport/api/trail"
	"github.com/gravitational/trace"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestTransient(t *testing.T) {
	grpcErr := func(c codes.Code) error { return trail.FromGRPC(status.Error(c, "injected")) }
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{grpcErr(codes.Unavailable), true},
		{grpcErr(codes.ResourceExhausted), true},
		{grpcErr(codes.DeadlineExceeded), true},
		{grpcErr(codes.Aborted), true},
		{fmt.Errorf("page: %w", context.DeadlineExceeded), true},
		{trace.ConnectionProblem(nil, "dial"), true},
		{grpcErr(codes.Internal), false},
		{grpcErr(codes.InvalidArgument), false},
		{grpcErr(codes.NotFound), false},
		{grpcErr(codes.PermissionDenied), false},
		{trace.BadParameter("bad cursor"), false},
	} {
		require.Equal(t, tc.want, Transient(tc.err), "%v", tc.err)
	}
}
