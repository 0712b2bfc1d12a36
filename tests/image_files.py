"""Image files as researchers have them, written by tests: class folders of 8-bit, 16-bit
and float PNG/TIFF and DICOM. (Not conftest.py: tests/train has its own, of the same
module name.)"""

import numpy as np


def write_image_folder(
    root, per_class: dict[str, int], kind: str = "png8", seed: int = 1
) -> dict[str, list[np.ndarray]]:
    """One sub-folder per class of grayscale images of mixed sizes, all made from the same
    8-bit pixels (returned per class): ``png8`` (mode L), ``png16`` (16-bit PNG, v * 257),
    ``tiff-float`` (32-bit float TIFF, v / 255) or ``dcm`` (DICOM: 12 bits stored, rescale
    intercept -1024 and a window of centre 40 and width 400 that maps them back to v)."""
    from pathlib import Path

    from PIL import Image

    rng = np.random.default_rng(seed)
    made: dict[str, list[np.ndarray]] = {}
    for cls, n in per_class.items():
        folder = Path(root) / cls
        folder.mkdir(parents=True)
        made[cls] = []
        for i in range(n):
            v = rng.integers(0, 256, (40 + i, 30), dtype=np.uint8)
            made[cls].append(v)
            name = folder / f"slice{i:03d}"
            if kind == "png8":
                Image.fromarray(v, mode="L").save(name.with_suffix(".png"))
            elif kind == "png16":
                Image.fromarray(v.astype(np.uint16) * 257).save(name.with_suffix(".png"))
            elif kind == "tiff-float":
                Image.fromarray(v.astype(np.float32) / 255).save(name.with_suffix(".tif"))
            elif kind == "dcm":
                write_dicom(name.with_suffix(".dcm"), dicom_stored(v))
            else:
                raise ValueError(f"kind: {kind!r}")
    return made


def dicom_stored(v: np.ndarray) -> np.ndarray:
    """Stored 12-bit values whose window (centre 40, width 400, intercept -1024) gives v."""
    hu = 39.5 + (v.astype(np.float64) / 255 - 0.5) * 399
    return np.rint(hu + 1024).astype(np.uint16)


def write_dicom(
    path, stored: np.ndarray, *, window: bool = True, photometric: str = "MONOCHROME2"
) -> None:
    """A single-frame 16-bit (12 stored) grayscale DICOM file, as a CT exporter writes one."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = (
        SecondaryCaptureImageStorage,
        meta.MediaStorageSOPInstanceUID,
    )
    ds.Modality = "CT"
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    if window:
        ds.WindowCenter, ds.WindowWidth = 40, 400
    ds.PixelData = stored.astype("<u2").tobytes()
    try:
        ds.save_as(path, enforce_file_format=True)  # pydicom 3
    except TypeError:
        ds.is_little_endian, ds.is_implicit_VR = True, False
        ds.save_as(path, write_like_original=False)  # pydicom 2
