package vrrp

import "log/slog"

var discardLog = slog.New(slog.DiscardHandler)
