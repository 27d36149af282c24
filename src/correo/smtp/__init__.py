"""correo.smtp"""
