package kernel

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"golang.org/x/net/bpf"
)

// EventFilter selects, in the kernel, the flow events a Listener receives
// (a classic BPF socket filter). It may only leave out events the caller's
// own filter would discard too: whatever it cannot decide (an unexpected
// message layout, an update that does not carry the TCP state) is
// delivered. Expectation events and other ctnetlink messages always pass.
//
// The zero EventFilter drops nothing.
type EventFilter struct {
	// Protocols, when not nil, are the only IP protocols delivered.
	Protocols []uint8
	// ExcludeProtocols are never delivered (VRRP).
	ExcludeProtocols []uint8
	// Ignore drops the flows whose original source or destination is in
	// one of these prefixes. A v4-mapped IPv6 prefix is not expressed.
	Ignore []netip.Prefix
	// TCPStates, when not nil, are the only TCP states of the NEW and
	// UPDATE events delivered. DESTROY events are always delivered
	// whatever their state: a flow replicated in a kept state may end in
	// another, and its end must reach the peer. An update without the
	// state (the kernel sends it only when it changed) is delivered.
	TCPStates []uint8
}

// Layout of a ctnetlink flow event: struct nlmsghdr (16 bytes), struct
// nfgenmsg (4 bytes), then the attributes, CTA_TUPLE_ORIG first
// (ctnetlink_conntrack_event), which nests CTA_TUPLE_IP then
// CTA_TUPLE_PROTO, whose first child is CTA_PROTO_NUM.
const (
	offPortID  = 12 // nlmsg_pid
	offType    = 4  // nlmsg_type: subsystem << 8 | message
	offFamily  = 16 // nfgenmsg.nfgen_family
	offAttrs   = 20
	nlaHdrLen  = 4
	familyV4   = 2  // AF_INET
	familyV6   = 10 // AF_INET6
	ctaProtoIn = ctaProtoInfo
	// maxWalk bounds the top-level attributes the program steps over
	// looking for CTA_PROTOINFO (it comes sixth or seventh).
	maxWalk = 16
	// Scratch memory slots.
	memLen, memPtr, memTmp, memMsg = 0, 1, 2, 3
)

// u16 byte offsets of the low and high bytes of a host-endian u16.
var lo, hi = func() (uint32, uint32) {
	if binary.NativeEndian.Uint16([]byte{1, 0}) == 1 {
		return 0, 1
	}
	return 1, 0
}()

// asm assembles a program with forward labels. Conditional jumps are
// emitted as a test over an unconditional jump, so no distance is limited
// to the 255 instructions of a conditional jump.
type asm struct {
	prog   []bpf.Instruction
	fix    map[int]string // index of a Jump -> its label
	labels map[string]int
}

func (a *asm) emit(ins ...bpf.Instruction) { a.prog = append(a.prog, ins...) }

func (a *asm) label(l string) { a.labels[l] = len(a.prog) }

func (a *asm) jump(l string) {
	a.fix[len(a.prog)] = l
	a.emit(bpf.Jump{})
}

// jumpIf jumps to l if A cond val.
func (a *asm) jumpIf(cond bpf.JumpTest, val uint32, l string) {
	a.emit(bpf.JumpIf{Cond: cond, Val: val, SkipTrue: 0, SkipFalse: 1})
	a.jump(l)
}

// jumpIfX jumps to l if A cond X.
func (a *asm) jumpIfX(cond bpf.JumpTest, l string) {
	a.emit(bpf.JumpIfX{Cond: cond, SkipTrue: 0, SkipFalse: 1})
	a.jump(l)
}

func (a *asm) assemble() ([]bpf.RawInstruction, error) {
	for i, l := range a.fix {
		to, ok := a.labels[l]
		if !ok || to <= i {
			return nil, fmt.Errorf("label %q: not a forward label", l)
		}
		a.prog[i] = bpf.Jump{Skip: uint32(to - i - 1)}
	}
	return bpf.Assemble(a.prog)
}

// Labels of the program.
const (
	lAccept = "accept"
	lDrop   = "drop"
	lTCP    = "tcp"
)

// program builds the socket filter: the port ids first (events caused by
// our own writes), then f.
func (f EventFilter) program(ignorePIDs []uint32) ([]bpf.RawInstruction, error) {
	a := &asm{fix: map[int]string{}, labels: map[string]int{}}
	if len(ignorePIDs) > 0 {
		a.emit(bpf.LoadAbsolute{Off: offPortID, Size: 4})
		for _, id := range ignorePIDs {
			a.jumpIf(bpf.JumpEqual, binary.BigEndian.Uint32(binary.NativeEndian.AppendUint32(nil, id)), lDrop)
		}
	}
	if f.empty() {
		a.jump(lAccept)
	} else {
		a.emit(bpf.LoadExtension{Num: bpf.ExtLen}, bpf.StoreScratch{Src: bpf.RegA, N: memLen})
		a.jumpIf(bpf.JumpLessThan, offAttrs, lAccept)
		a.emit(bpf.LoadAbsolute{Off: offType + hi, Size: 1})
		a.jumpIf(bpf.JumpNotEqual, subsysCT, lAccept)
		a.emit(bpf.LoadAbsolute{Off: offType + lo, Size: 1}, bpf.StoreScratch{Src: bpf.RegA, N: memMsg})
		a.emit(bpf.LoadAbsolute{Off: offFamily, Size: 1})
		a.jumpIf(bpf.JumpEqual, familyV6, "v6")
		a.jumpIf(bpf.JumpNotEqual, familyV4, lAccept)
		f.family(a, false)
		a.label("v6")
		f.family(a, true)
		a.label(lTCP)
		f.tcpState(a)
	}
	a.label(lAccept)
	a.emit(bpf.RetConstant{Val: 0xffffffff})
	a.label(lDrop)
	a.emit(bpf.RetConstant{Val: 0})
	return a.assemble()
}

func (f EventFilter) empty() bool {
	return f.Protocols == nil && len(f.ExcludeProtocols) == 0 && len(f.Ignore) == 0 && f.TCPStates == nil
}

// family checks the protocol and addresses of one family's events, then
// goes on to the TCP state.
func (f EventFilter) family(a *asm, v6 bool) {
	n, srcType, dstType, fam := uint32(4), uint32(ctaIPv4Src), uint32(ctaIPv4Dst), "v4"
	if v6 {
		n, srcType, dstType, fam = 16, ctaIPv6Src, ctaIPv6Dst, "v6"
	}
	origHdr := uint32(offAttrs)
	ipHdr := origHdr + nlaHdrLen
	srcHdr := ipHdr + nlaHdrLen
	dstHdr := srcHdr + nlaHdrLen + n
	protoHdr := dstHdr + nlaHdrLen + n
	numHdr := protoHdr + nlaHdrLen
	protoOff := numHdr + nlaHdrLen
	a.emit(bpf.LoadScratch{Dst: bpf.RegA, N: memLen})
	a.jumpIf(bpf.JumpLessThan, protoOff+1, lAccept)
	for _, c := range []struct{ off, typ uint32 }{
		{origHdr, ctaTupleOrig}, {ipHdr, ctaTupleIP}, {srcHdr, srcType},
		{dstHdr, dstType}, {protoHdr, ctaTupleProto}, {numHdr, ctaProtoNum},
	} {
		a.emit(bpf.LoadAbsolute{Off: c.off + 2 + lo, Size: 1})
		a.jumpIf(bpf.JumpNotEqual, c.typ, lAccept) // not the layout expected
	}
	a.emit(bpf.LoadAbsolute{Off: protoOff, Size: 1})
	for _, p := range f.ExcludeProtocols {
		a.jumpIf(bpf.JumpEqual, uint32(p), lDrop)
	}
	if f.Protocols != nil {
		ok := "proto-ok-" + fam
		for _, p := range f.Protocols {
			a.jumpIf(bpf.JumpEqual, uint32(p), ok)
		}
		a.jump(lDrop)
		a.label(ok)
	}
	for i, p := range f.Ignore {
		if p.Addr().Is4() == v6 || p.Addr().Is4In6() {
			continue
		}
		for j, off := range []uint32{srcHdr + nlaHdrLen, dstHdr + nlaHdrLen} {
			prefixMatch(a, p.Masked(), off, fmt.Sprintf("ignore-%s-%d-%d", fam, i, j))
		}
	}
	a.jump(lTCP)
}

// prefixMatch drops the event if the address at off is in p; next is a
// fresh label.
func prefixMatch(a *asm, p netip.Prefix, off uint32, next string) {
	addr := p.Addr().AsSlice()
	for w := 0; w*32 < p.Bits(); w++ {
		bits := min(p.Bits()-w*32, 32)
		mask := ^uint32(0) << (32 - bits)
		a.emit(bpf.LoadAbsolute{Off: off + uint32(4*w), Size: 4},
			bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: mask})
		a.jumpIf(bpf.JumpNotEqual, binary.BigEndian.Uint32(addr[4*w:]), next)
	}
	a.jump(lDrop)
	a.label(next)
}

// tcpState drops the NEW and UPDATE events of TCP flows whose state is
// not kept. A is free; the protocol is reloaded.
func (f EventFilter) tcpState(a *asm) {
	if f.TCPStates == nil {
		a.jump(lAccept)
		return
	}
	// The protocol number sits at the same place relative to the family.
	a.emit(bpf.LoadAbsolute{Off: offFamily, Size: 1})
	a.jumpIf(bpf.JumpEqual, familyV6, "tcp-v6")
	a.emit(bpf.LoadAbsolute{Off: offAttrs + 4*nlaHdrLen + 2*(nlaHdrLen+4), Size: 1})
	a.jump("tcp-proto")
	a.label("tcp-v6")
	a.emit(bpf.LoadAbsolute{Off: offAttrs + 4*nlaHdrLen + 2*(nlaHdrLen+16), Size: 1})
	a.label("tcp-proto")
	a.jumpIf(bpf.JumpNotEqual, 6, lAccept)
	a.emit(bpf.LoadScratch{Dst: bpf.RegA, N: memMsg})
	a.jumpIf(bpf.JumpEqual, msgCTDelete, lAccept)

	// Step over the top-level attributes to CTA_PROTOINFO.
	a.emit(bpf.LoadConstant{Dst: bpf.RegX, Val: offAttrs})
	for range maxWalk {
		bound(a, nlaHdrLen)
		a.emit(bpf.LoadIndirect{Off: 2 + lo, Size: 1})
		a.jumpIf(bpf.JumpEqual, ctaProtoIn, "protoinfo")
		a.emit(
			bpf.StoreScratch{Src: bpf.RegX, N: memPtr},
			bpf.LoadIndirect{Off: hi, Size: 1},
			bpf.ALUOpConstant{Op: bpf.ALUOpShiftLeft, Val: 8},
			bpf.StoreScratch{Src: bpf.RegA, N: memTmp},
			bpf.LoadIndirect{Off: lo, Size: 1},
			bpf.LoadScratch{Dst: bpf.RegX, N: memTmp},
			bpf.ALUOpX{Op: bpf.ALUOpOr},
		)
		a.jumpIf(bpf.JumpLessThan, nlaHdrLen, lAccept) // a bad nla_len: stop
		a.emit(
			bpf.ALUOpConstant{Op: bpf.ALUOpAdd, Val: 3},
			bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: ^uint32(3)},
			bpf.LoadScratch{Dst: bpf.RegX, N: memPtr},
			bpf.ALUOpX{Op: bpf.ALUOpAdd},
			bpf.TAX{},
		)
	}
	a.jump(lAccept) // not found: an update without the state
	a.label("protoinfo")
	// CTA_PROTOINFO { CTA_PROTOINFO_TCP { CTA_PROTOINFO_TCP_STATE u8, ... } }
	bound(a, 3*nlaHdrLen+1)
	a.emit(bpf.LoadIndirect{Off: nlaHdrLen + 2 + lo, Size: 1})
	a.jumpIf(bpf.JumpNotEqual, ctaProtoInfoTCP, lAccept)
	a.emit(bpf.LoadIndirect{Off: 2*nlaHdrLen + 2 + lo, Size: 1})
	a.jumpIf(bpf.JumpNotEqual, ctaTCPState, lAccept)
	a.emit(bpf.LoadIndirect{Off: 3 * nlaHdrLen, Size: 1})
	for _, s := range f.TCPStates {
		a.jumpIf(bpf.JumpEqual, uint32(s), lAccept)
	}
	a.jump(lDrop)
}

// bound accepts the event if fewer than n bytes are left from X (a load
// past the end would end the program with 0, a drop). X is kept.
func bound(a *asm, n uint32) {
	a.emit(
		bpf.StoreScratch{Src: bpf.RegX, N: memPtr},
		bpf.TXA{},
		bpf.ALUOpConstant{Op: bpf.ALUOpAdd, Val: n},
		bpf.LoadScratch{Dst: bpf.RegX, N: memLen},
	)
	a.jumpIfX(bpf.JumpGreaterThan, lAccept)
	a.emit(bpf.LoadScratch{Dst: bpf.RegX, N: memPtr})
}
