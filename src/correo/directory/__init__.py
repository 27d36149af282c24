"""correo.directory"""
