package hypervisor

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// headerReadSize covers a qcow2 image's whole first cluster at the largest cluster
// size (2 MiB), where its header extensions live.
const headerReadSize = 2 << 20

// sniff classifies an image by its first bytes, as QEMU's own format probes would,
// and accepts only raw and a qcow2 naming no other file. Formats QEMU could open are
// named in the refusal, so the operator knows what to convert; bytes no probe claims
// are raw, which is what they are to a guest when the format is stated.
func sniff(head []byte) (string, error) {
	if format := otherFormat(head); format != "" {
		return "", fmt.Errorf("%w: format %s; a golden disk must be raw or qcow2 (convert it with qemu-img convert -O qcow2)", ErrUnsafeImage, format)
	}
	if !bytes.HasPrefix(head, qcow2Magic) {
		return FormatRaw, nil
	}
	if err := checkQCOW2Header(head); err != nil {
		return "", err
	}
	return FormatQCOW2, nil
}

var qcow2Magic = []byte("QFI\xfb")

// Header fields of qcow2 (docs/interop/qcow2.txt in QEMU).
const (
	qcow2IncompatDataFile    = 1 << 2     // incompatible_features: external data file
	qcow2AutoclearRawData    = 1 << 1     // autoclear_features: the data file is raw
	qcow2ExtDataFile         = 0x44415441 // header extension: external data file name
	qcow2V2HeaderLength      = 72
	qcow2MinV3HeaderLength   = 104
	qcow2MaxBackingNameBytes = 1023
)

// checkQCOW2Header refuses a qcow2 image that has a backing file or an external data
// file, reading the header directly so that nothing it names is ever opened.
func checkQCOW2Header(head []byte) error {
	be := binary.BigEndian
	if len(head) < qcow2V2HeaderLength {
		return fmt.Errorf("%w: qcow2 header truncated", ErrUnsafeImage)
	}
	version := be.Uint32(head[4:])
	if version < 2 {
		return fmt.Errorf("%w: format qcow (version 1); a golden disk must be raw or qcow2", ErrUnsafeImage)
	}
	if off, size := be.Uint64(head[8:]), be.Uint32(head[16:]); off != 0 || size != 0 {
		name := "a file named in its header"
		if size <= qcow2MaxBackingNameBytes && off < uint64(len(head)) && off+uint64(size) <= uint64(len(head)) {
			name = string(head[off : off+uint64(size)])
		}
		return fmt.Errorf("%w: it has a backing file (%s); a golden image must be self-contained", ErrUnsafeImage, name)
	}
	if version == 2 {
		// Version 2 has no feature bits and no external data file.
		return nil
	}
	if len(head) < qcow2MinV3HeaderLength {
		return fmt.Errorf("%w: qcow2 version 3 header truncated", ErrUnsafeImage)
	}
	incompat, autoclear := be.Uint64(head[72:]), be.Uint64(head[88:])
	headerLen := be.Uint32(head[100:])
	dataFile := "named in a header extension"
	hasExt := false
	// Header extensions follow the header: type, length, data padded to 8 bytes,
	// ending with type 0.
	for off := uint64(headerLen); off+8 <= uint64(len(head)); {
		typ, n := be.Uint32(head[off:]), uint64(be.Uint32(head[off+4:]))
		if typ == 0 {
			break
		}
		data := off + 8
		if typ == qcow2ExtDataFile {
			hasExt = true
			if data+n <= uint64(len(head)) {
				dataFile = string(head[data : data+n])
			}
		}
		off = data + (n+7)&^7
	}
	if incompat&qcow2IncompatDataFile != 0 || autoclear&qcow2AutoclearRawData != 0 || hasExt {
		return fmt.Errorf("%w: qcow2 with an external data file (%s); a golden image must be self-contained", ErrUnsafeImage, dataFile)
	}
	return nil
}

// otherFormat names the image format other than raw and qcow2 that QEMU's probes would
// find in head, or "" for none. The checks follow the probe functions of QEMU's block
// drivers (block/*.c); a format missed here is still never opened as such, because
// Drover states "raw" for it.
func otherFormat(head []byte) string {
	has := func(off int, magic string) bool {
		return len(head) >= off+len(magic) && string(head[off:off+len(magic)]) == magic
	}
	switch {
	case has(0, "KDMV"), has(0, "COWD"), vmdkDescriptor(head):
		return "vmdk"
	case has(0, "QED\x00"):
		return "qed"
	case has(0, "vhdxfile"):
		return "vhdx"
	case has(0, "conectix"):
		return "vpc (vhd)"
	case len(head) >= 0x44 && binary.LittleEndian.Uint32(head[0x40:]) == 0xbeda107f:
		return "vdi"
	case has(0, "LUKS\xba\xbe"):
		return "luks"
	case has(0, "WithoutFreeSpace"), has(0, "WithouFreSpacExt"):
		return "parallels"
	case has(0, "Bochs Virtual HD Image"):
		return "bochs"
	case has(0, "#!/bin/sh\n#V2.0 Format\nmodprobe cloop file=$0"):
		return "cloop"
	}
	return ""
}

// vmdkDescriptor reports whether head is a VMDK text descriptor as QEMU's vmdk_probe
// sees one: comment and blank lines, then "version=1", "=2" or "=3". Such a descriptor
// lists extents by file name, any file on the host.
func vmdkDescriptor(head []byte) bool {
	p := head
	for len(p) > 0 {
		switch p[0] {
		case '#':
			i := bytes.IndexByte(p, '\n')
			if i < 0 {
				return false
			}
			p = p[i+1:]
			continue
		case ' ':
			p = bytes.TrimLeft(p, " ")
			p = bytes.TrimPrefix(p, []byte("\r"))
			if len(p) == 0 || p[0] != '\n' {
				return false
			}
			p = p[1:]
			continue
		}
		for _, v := range []string{"version=1", "version=2", "version=3"} {
			if bytes.HasPrefix(p, []byte(v+"\n")) || bytes.HasPrefix(p, []byte(v+"\r\n")) {
				return true
			}
		}
		return false
	}
	return false
}
