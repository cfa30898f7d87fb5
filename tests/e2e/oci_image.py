#!/usr/bin/python3
"""oci_image.py ROOTFS NAME OUT.tar: writes an OCI image archive (oci-layout, index.json, blobs) with
ROOTFS as its one layer, named NAME, for `ctr image import` without a registry."""

import hashlib
import io
import json
import sys
import tarfile


def main():
    rootfs, name, out = sys.argv[1:4]
    blobs = {}

    def blob(data):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return {"digest": digest, "size": len(data)}

    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as t:
        t.add(rootfs, arcname=".")
    layer_desc = blob(layer.getvalue())
    config = {"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
              "rootfs": {"type": "layers", "diff_ids": [layer_desc["digest"]]}}
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": dict(mediaType="application/vnd.oci.image.config.v1+json", **blob(json.dumps(config).encode())),
                "layers": [dict(mediaType="application/vnd.oci.image.layer.v1.tar", **layer_desc)]}
    index = {"schemaVersion": 2, "manifests": [dict(
        mediaType="application/vnd.oci.image.manifest.v1+json", **blob(json.dumps(manifest).encode()),
        annotations={"org.opencontainers.image.ref.name": name, "io.containerd.image.name": name})]}
    with tarfile.open(out, "w") as t:
        def add(path, data):
            info = tarfile.TarInfo(path)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
        add("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        add("index.json", json.dumps(index).encode())
        for digest, data in blobs.items():
            add("blobs/sha256/" + digest.split(":")[1], data)


if __name__ == "__main__":
    main()
