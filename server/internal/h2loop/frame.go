package h2loop

import "encoding/binary"

// The frames of RFC 9113 section 6 this server reads and writes.
const (
	frameData         = 0x0
	frameHeaders      = 0x1
	framePriority     = 0x2
	frameRSTStream    = 0x3
	frameSettings     = 0x4
	framePushPromise  = 0x5
	framePing         = 0x6
	frameGoAway       = 0x7
	frameWindowUpdate = 0x8
	frameContinuation = 0x9

	flagEndStream  = 0x1
	flagAck        = 0x1
	flagEndHeaders = 0x4
	flagPadded     = 0x8
	flagPriority   = 0x20

	settingHeaderTableSize      = 0x1
	settingEnablePush           = 0x2
	settingMaxConcurrentStreams = 0x3
	settingInitialWindowSize    = 0x4
	settingMaxFrameSize         = 0x5
	settingMaxHeaderListSize    = 0x6

	errNo               = 0x0
	errProtocol         = 0x1
	errInternal         = 0x2
	errFlowControl      = 0x3
	errStreamClosed     = 0x5
	errFrameSize        = 0x6
	errRefusedStream    = 0x7
	errCancel           = 0x8
	errCompression      = 0x9
	errEnhanceYourCalm  = 0xb
	frameHeaderLen      = 9
	defaultWindow       = 65535
	maxWindow           = 1<<31 - 1
	maxFrameSize        = 16 << 10 // what this server reads (the default; never raised)
	clientPreface       = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
	maxHeaderBlockBytes = 64 << 10
)

// appendFrame appends a frame header and payload.
func appendFrame(b []byte, typ, flags byte, sid uint32, payload []byte) []byte {
	n := len(payload)
	b = append(b, byte(n>>16), byte(n>>8), byte(n), typ, flags)
	b = binary.BigEndian.AppendUint32(b, sid&maxWindow)
	return append(b, payload...)
}

func appendUint32Frame(b []byte, typ byte, sid, v uint32) []byte {
	var p [4]byte
	binary.BigEndian.PutUint32(p[:], v)
	return appendFrame(b, typ, 0, sid, p[:])
}

func appendGoAway(b []byte, last, code uint32) []byte {
	var p [8]byte
	binary.BigEndian.PutUint32(p[:4], last&maxWindow)
	binary.BigEndian.PutUint32(p[4:], code)
	return appendFrame(b, frameGoAway, 0, 0, p[:])
}

// stripPadding removes a PADDED frame's pad length byte and padding.
func stripPadding(flags byte, p []byte) ([]byte, bool) {
	if flags&flagPadded == 0 {
		return p, true
	}
	if len(p) < 1 || int(p[0]) >= len(p) {
		return nil, false
	}
	return p[1 : len(p)-int(p[0])], true
}
