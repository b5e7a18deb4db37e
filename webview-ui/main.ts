// The alert webview; filled in by the threats feature.
