//go:build tools

// Package tools records the binary this module builds, so that go.mod and go.sum pin it.
package tools

import _ "helm.sh/helm/v4/cmd/helm"
