//go:build tools

// Package tools records the KubeRay operator the testbed builds, so that go.mod and go.sum pin it.
package tools

import (
	_ "github.com/ray-project/kuberay/ray-operator"
)
