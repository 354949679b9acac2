"""The run report: one self-contained HTML file (`render_report`) from a `ReportData`."""
