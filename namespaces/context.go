// Package namespaces carries the containerd namespace of a request in its
// context. Every reference berth stores (images, containers, leases, content
// and snapshot references) lives in exactly one namespace; the namespace comes
// from the "containerd-namespace" gRPC header (or "containerd-namespace-ttrpc"
// on ttrpc) and defaults to "default" when absent.
package namespaces

import (
	"context"
	"fmt"

	"github.com/berth-dev/berth/identifiers"
	"github.com/containerd/errdefs"
)

const (
	// GRPCHeader is the gRPC metadata key that carries the namespace.
	GRPCHeader = "containerd-namespace"
	// TTRPCHeader is the ttrpc metadata key that carries the namespace.
	TTRPCHeader = "containerd-namespace-ttrpc"
	// Default is the namespace of a request that names none.
	Default = "default"
)

type nsKey struct{}

// WithNamespace returns a context that carries namespace ns.
func WithNamespace(ctx context.Context, ns string) context.Context {
	return context.WithValue(ctx, nsKey{}, ns)
}

// Namespace returns the namespace carried by ctx, if any.
func Namespace(ctx context.Context) (string, bool) {
	ns, ok := ctx.Value(nsKey{}).(string)
	return ns, ok && ns != ""
}

// NamespaceRequired returns the namespace carried by ctx, validated, or an
// InvalidArgument error when it is missing or malformed.
func NamespaceRequired(ctx context.Context) (string, error) {
	ns, ok := Namespace(ctx)
	if !ok {
		return "", fmt.Errorf("namespace is required: %w", errdefs.ErrFailedPrecondition)
	}
	if err := Validate(ns); err != nil {
		return "", err
	}
	return ns, nil
}

// Validate checks a namespace name against containerd's identifier rules.
func Validate(ns string) error {
	if err := identifiers.Validate(ns); err != nil {
		return fmt.Errorf("namespace: %w", err)
	}
	return nil
}
