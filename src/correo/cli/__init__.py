"""correo.cli"""
