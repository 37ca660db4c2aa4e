#!/bin/bash
# dracut module "cl-metadata": the agent in the initrd, for two jobs there:
#   cl-metadata-rd-network-kargs.service  network kernel arguments from the platform's interface
#                                         description (/etc/cmdline.d), before dracut reads them
#   cl-metadata-rd-hostname.service       the hostname into /sysroot/etc/hostname, on platforms
#                                         whose DHCP does not give it
# The agent is Python: the module installs the interpreter the installed cl-metadata command
# runs with, the part of its standard library the agent can use, and the agent's packages
# (requests, PyYAML and theirs), as python-files lists them. See docs/packaging.md.

check() {
    # Only when asked for (dracut --add cl-metadata, or add_dracutmodules+=" cl-metadata "):
    # the kernel command line or the image's settings must name the platform for it to act.
    require_binaries "${CL_METADATA_DRACUT_AGENT:-cl-metadata}" || return 1
    return 255
}

depends() {
    # network: dracut's network stack reads the arguments; systemd: the units
    echo systemd network
}

installkernel() {
    # the drivers cl-metadata-rd-network-kargs.service loads before udev runs (its
    # ExecStartPre=, the same list): virtio, SATA/IDE, SCSI and Xen disks and CD-ROM drives,
    # and the filesystems of config drives with the code pages vfat mounts with. Host-only
    # images would otherwise leave out what the build machine did not use.
    hostonly='' instmods virtio_pci virtio_blk virtio_scsi ata_piix ahci xen_blkfront sd_mod \
        sr_mod isofs vfat nls_cp437 nls_iso8859_1 nls_utf8
}

install() {
    local agent python file
    # CL_METADATA_DRACUT_AGENT: another cl-metadata command (a virtual environment's, for tests)
    agent=$(find_binary "${CL_METADATA_DRACUT_AGENT:-cl-metadata}") || return 1
    read -r python < "$agent"
    python=${python#\#!}
    python=${python%% *}
    [[ -x $python ]] || { derror "cl-metadata: $agent does not name its Python (#!)"; return 1; }
    inst_multiple "$python"
    inst_simple "$agent" /usr/bin/cl-metadata
    # every file of the interpreter's library and of the agent's packages it can import
    # (ELF extension modules bring their libraries along)
    local -a files=()
    while IFS= read -r file; do
        files+=("$file")
    done < <("$python" -I "$moddir/python-files")
    ((${#files[@]} > 0)) || { derror "cl-metadata: python-files listed nothing"; return 1; }
    inst_multiple "${files[@]}"
    # what the config drive reader runs, the kargs unit's modprobe, and VMware's guestinfo
    # tools when present
    inst_multiple mount umount modprobe
    inst_multiple -o vmware-rpctool vmtoolsd
    # the image's settings file names the platform on plain images
    [[ -f /etc/cl-metadata/cl-metadata.conf ]] && inst_simple /etc/cl-metadata/cl-metadata.conf
    # dracut reads /etc/cmdline.d/*.conf; the agent never creates a directory outside /run
    inst_dir /etc/cmdline.d

    local unit
    for unit in cl-metadata-rd-network-kargs.service cl-metadata-rd-hostname.service; do
        inst_simple "$moddir/$unit" "$systemdsystemunitdir/$unit"
        mkdir -p "$initdir/$systemdsystemunitdir/initrd.target.wants"
        ln_r "$systemdsystemunitdir/$unit" "$systemdsystemunitdir/initrd.target.wants/$unit"
    done
}
