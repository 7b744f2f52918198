"""Detector service: finds the products (COCO objects) in a photo with a YOLO ONNX model."""
