//go:build !linux

package flowgen

import (
	"context"
	"errors"
)

// Run is Linux's only (it drives non-blocking sockets through epoll).
func (c *RateClient) Run(context.Context) (RateReport, error) {
	return RateReport{}, errors.New("rate client: Linux only")
}
