"""`GET /openapi.json`: cnnlab serve's API as an OpenAPI 3.1 document."""

from cnnlab.core import __version__


def openapi(info: dict, max_k: int) -> dict:
    """The API as an OpenAPI 3.1 document, the served model's classes and limits filled in."""
    def error(why):
        return {"description": why, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}

    def ok(schema, description):
        return {"description": description, "content": {"application/json": {"schema": {"$ref": schema}}}}

    mib = info["max_upload_bytes"] >> 20
    return {
        "openapi": "3.1.0",
        "info": {"title": "cnnlab serve", "version": __version__,
                 "description": f"Classifies pictures with one trained model ({info['dataset'] or 'model'}, "
                                f"{len(info['classes'])} classes). Uploads: at most {mib} MiB and "
                                f"{info['max_pixels']} pixels; PNG, JPEG, BMP, GIF, WebP or TIFF."},
        "paths": {
            "/": {"get": {"summary": "The web page: upload, drop or draw a picture, see the top-5 classes",
                          "responses": {"200": {"description": "HTML page", "content": {"text/html": {}}}}}},
            "/model": {"get": {"summary": "The served model", "responses": {
                "200": ok("#/components/schemas/Model", "Classes, input shape and limits")}}},
            "/openapi.json": {"get": {"summary": "This document", "responses": {
                "200": {"description": "OpenAPI 3.1 document", "content": {"application/json": {}}}}}},
            "/predict": {"post": {
                "summary": "Top-k classes of one picture",
                "description": "The request body is the image file's bytes, nothing else (no form encoding). "
                               "The picture is prepared as in training: channels, resize to the input "
                               "size, and for single-channel models a light background is inverted.",
                "parameters": [{"name": "k", "in": "query", "required": False, "description": "how many classes",
                                "schema": {"type": "integer", "minimum": 1, "maximum": max_k, "default": 5}}],
                "requestBody": {"required": True, "content": {
                    kind: {"schema": {"type": "string", "contentMediaType": kind}}
                    for kind in ("image/png", "image/jpeg", "image/bmp", "image/gif", "image/webp", "image/tiff",
                                 "application/octet-stream")} | {"multipart/form-data": {"schema": {
                                     "type": "object", "properties": {"file": {"type": "string",
                                                                               "contentMediaType": "image/*"}}}}}},
                "responses": {
                    "200": ok("#/components/schemas/Prediction", "Classes by falling probability"),
                    "400": error("Bad k, or an empty or incomplete body"),
                    "408": error("The upload was not complete within the request deadline (30 s from its first byte)"),
                    "411": error("No Content-Length header (chunked uploads are refused)"),
                    "413": error(f"Content-Length over {mib} MiB; the body is not read"),
                    "415": error("The body is not a PNG, JPEG, BMP, GIF, WebP or TIFF file"),
                    "422": error("The image is damaged, or has too many pixels (a decompression bomb)"),
                    "503": error("The server is full (connections or waiting pictures); retry after the Retry-After "
                                 "header's seconds")}}},
        },
        "components": {"schemas": {
            "Error": {"type": "object", "required": ["error"],
                      "properties": {"error": {"type": "string", "description": "one line"}}},
            "Prediction": {"type": "object", "required": ["top"], "properties": {"top": {"type": "array", "items": {
                "type": "object", "required": ["class", "probability"],
                "properties": {"class": {"type": "string", "enum": info["classes"]},
                               "probability": {"type": "number", "minimum": 0, "maximum": 1}}}}}},
            "Model": {"type": "object", "required": list(info), "properties": {
                "classes": {"type": "array", "items": {"type": "string"}},
                "input_shape": {"type": "array", "items": {"type": "integer"}, "description": "C, H, W"},
                "dataset": {"type": "string"},
                "drawable": {"type": "boolean", "description": "single-channel: the page offers a drawing canvas"},
                "parameters": {"type": "integer"},
                "max_upload_bytes": {"type": "integer"}, "max_pixels": {"type": "integer"}}},
        }},
    }
